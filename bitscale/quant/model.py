"""What the quant library needs of a model: a structural protocol, so ``quant/`` depends on no harness contract.

Every ``bitscale.harness.contracts.GenerativeModel`` satisfies it (the harness's contract is the
plugin-facing one; this is the smallest part of it the numerics touch).
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn


class QuantModel(Protocol):
    """A model whose ``module`` holds the Linears to quantize, named by ``quant_layers``."""

    module: nn.Module

    def quant_layers(self) -> dict[str, nn.Linear]: ...

    def forward_batch(self, batch: Any) -> torch.Tensor: ...
