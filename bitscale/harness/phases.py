"""The optional *generation phases* extension of the model contract (the paper's Fig. 2a).

Every step of a vision generator has two phases: **feature extraction** (the network's output at
the step: a language-style model's logits, a diffusion model's predicted noise) and
**reconstruction** into the representation space (a token drawn and looked up in the codebook; the
sampler's next latent). ``bitscale analyze`` needs to see, and sometimes change, what passes
between them, so a model that supports the analyses returns a ``GenerationPhases`` from
``GenerativeModel.generation_phases(labels, generator)`` and says which of its layers are the
paper's fc1 / qkv / fc2 in ``GenerativeModel.activation_layers``.

A driver runs one generation as::

    g = model.generation_phases(labels, generator)
    for step in range(g.num_steps):
        f = g.extract(step)          # run the network on the current state
        r = g.reconstruct(step, f)   # into the representation space (may draw from `generator`)
        g.advance(step, r)           # r becomes the state the next step is built from
    g.output(); g.images(); g.close()

and that must give exactly what ``model.sample(labels, generator)`` gives. The split lets a driver
change ``f`` (inject noise) or ``advance`` with another model's ``r`` (teacher forcing). Random
draws happen only in ``__init__`` (initial noise) and ``reconstruct``, in the same number whatever
the features, so two generations from equally seeded generators share their randomness.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal

import torch


class GenerationPhases(ABC):
    """One generation in progress, one step at a time (see the module docstring)."""

    #: Number of steps: VAR's scales, LlamaGen's tokens, the diffusion sampler's steps.
    num_steps: int
    #: The representation space of ``reconstruct``: ``"discrete"`` (codebook) or ``"continuous"``.
    space: Literal["discrete", "continuous"]

    @abstractmethod
    def extract(self, step: int) -> torch.Tensor:
        """Feature extraction at ``step``: the network's output on the current state, ``(B, ...)``.

        For guided sampling it is the guided output, i.e. exactly what ``reconstruct`` consumes."""

    @abstractmethod
    def reconstruct(self, step: int, features: torch.Tensor) -> torch.Tensor:
        """Map ``features`` into the representation space, ``(B, ...)``; does not change the state."""

    @abstractmethod
    def advance(self, step: int, reconstruction: torch.Tensor) -> None:
        """Make ``reconstruction`` (this model's or another's) the result of ``step``."""

    @abstractmethod
    def output(self) -> torch.Tensor:
        """The final representation ``(B, ...)`` after the last step (before the decoder)."""

    @abstractmethod
    def images(self) -> torch.Tensor:
        """The final images, ``uint8 (B, 3, H, W)`` on the CPU, as ``sample`` returns them."""

    def step_label(self, step: int) -> str:
        """How plots name ``step`` (e.g. ``"scale 2x2"``, ``"t=999"``)."""
        return str(step)

    def close(self) -> None:
        """Release what the generation holds (KV caches); called even when a driver stops early."""

    def __enter__(self) -> GenerationPhases:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_generation(g: GenerationPhases) -> GenerationPhases:
    """Drive ``g`` to the end with its own reconstructions (what ``sample`` does)."""
    for step in range(g.num_steps):
        g.advance(step, g.reconstruct(step, g.extract(step)))
    return g
