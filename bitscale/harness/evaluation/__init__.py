"""Evaluation: FID/IS/KID through torch-fidelity, with a feature extractor chosen per data set."""
