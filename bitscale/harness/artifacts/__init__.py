"""Trained artifacts: the user cache (sha256-checked) and the weights bitscale ships (bitscale/zoo/weights/)."""
