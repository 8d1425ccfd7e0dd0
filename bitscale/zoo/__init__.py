"""The tiny zoo: models bitscale trains itself on offline data, their shipped weights (``weights/``) and
their pre-training (``pretrain``). Builds on the core's artifact cache (``bitscale.harness.artifacts``)."""
