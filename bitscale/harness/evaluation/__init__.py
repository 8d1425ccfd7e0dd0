"""Evaluation: FID and IS through torch-fidelity, with a feature extractor chosen per data set (no KID: see fid.py)."""
