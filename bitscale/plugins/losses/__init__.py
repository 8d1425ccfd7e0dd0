"""Built-in distillation losses, each a plugin module registered through ``register_losses``.

- ``kl``: ``forward-kl`` (mode-covering) and ``reverse-kl`` (mode-seeking) on token logits.
- ``topkld``: the paper's TopKLD (Eq. 7): reverse KL on the teacher's top-K classes, forward KL on the rest.
- ``js``: (generalised) Jensen-Shannon divergence on token logits.
- ``mse``: mean squared error on raw outputs (predicted noise of diffusion models, or logits).

``_divergence`` holds the numerically careful pieces they share. See ``docs/distillation.md``.
"""
