"""TopKLD (the paper's Eq. 7): reverse KL over the teacher's top-K classes, forward KL over the rest.

Per token, with ``M_s`` the K classes the teacher ranks highest and ``M_c`` the others::

    TopKLD(P_T || P_S) = sum_{y in M_s} P_S(y) log(P_S(y) / P_T(y))     (mode-seeking on the head)
                       + sum_{y in M_c} P_T(y) log(P_T(y) / P_S(y))     (mode-covering on the tail)

The head is what top-K sampling draws from, so the student should match it sharply ("explicit
knowledge"); the tail carries the teacher's "implicit knowledge" (Zhao et al., 2022), which
reverse KL would ignore. ``K = V`` gives reverse KL, ``K = 0`` forward KL.

Two forms (option ``form``):

- ``"generalized"`` (default): each partial sum uses the generalized KL of unnormalized measures,
  ``p log(p/q) - p + q``, i.e. Eq. 7 plus ``2 (P_T(M_s) - P_S(M_s))``. Every term is >= 0 and the
  minimum is exactly ``P_S = P_T``. The two forms are identical at ``K = 0`` and ``K = V`` (the
  correction sums to zero) and have the same gradient inside ``M_s`` and ``M_c`` except for the
  mass balance between them.
- ``"eq7"``: Eq. 7 as printed. Its partial sums are not divergences: at ``P_S = P_T`` it is 0 but
  its gradient is not, and it is minimized by moving the student's mass from the top-K classes
  to the tail (e.g. a teacher with 90% of its mass in the top-K is best matched, under Eq. 7, by a
  student with ~29% there). Kept for exact reproduction studies; not recommended for training.

``K``: option ``k``; when ``None``, ``prepare(model)`` takes the model's sampling top-k
(``model.sampler["top_k"]`` when it is a positive int: the paper found K = the sampling top-k
best, Table 4). Models that sample from the full distribution (no top-k) fall back to
``round(fallback_fraction * V)``; the default 0.15 is the paper's best K relative to VAR's
vocabulary (600 / 4096). K larger than V is clamped to V.

Ties at the K-th largest teacher logit are broken by class index (lower index joins ``M_s``),
so the split is deterministic on every device.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor

from bitscale import hookimpl
from bitscale.harness.contracts import DistillLoss, GenerativeModel, PluginOptions
from bitscale.plugins.losses._divergence import LogitLossOptions, check_pair, kl_terms, log_probs, token_mean


class TopKLDOptions(LogitLossOptions):
    """TopKLD options (see the module docstring)."""

    k: int | None = Field(
        default=None, ge=0, description="Top-K split; None = the model's sampling top-k (set by prepare)."
    )
    fallback_fraction: float = Field(
        default=0.15,
        ge=0,
        le=1,
        description="K = round(fraction * V) when k is None and the model has no sampling top-k.",
    )
    form: Literal["generalized", "eq7"] = Field(
        default="generalized",
        description="'generalized': partial sums of p log(p/q) - p + q (minimum at student = teacher); "
        "'eq7': the paper's Eq. 7 verbatim.",
    )


def top_k_mask(scores: Tensor, k: int) -> Tensor:
    """Boolean mask of the ``k`` largest entries along the last dim; ties broken by lower index.

    ``torch.topk`` does not specify which of several equal values it returns, so only its values
    are used (the K-th largest value is unique); membership at the threshold is then decided by
    counting tied entries in index order.
    """
    v = scores.shape[-1]
    if k <= 0:
        return torch.zeros_like(scores, dtype=torch.bool)
    if k >= v:
        return torch.ones_like(scores, dtype=torch.bool)
    threshold = torch.topk(scores, k, dim=-1, sorted=False).values.amin(dim=-1, keepdim=True)
    above = scores > threshold
    tied = scores == threshold
    free = k - above.sum(dim=-1, keepdim=True)  # seats left for entries equal to the threshold
    return above | (tied & (torch.cumsum(tied, dim=-1) <= free))


def resolve_k(sampler: dict[str, Any] | None) -> int | None:
    """The model's sampling top-k when it is a positive int, else ``None``."""
    top_k = (sampler or {}).get("top_k")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k <= 0:
        return None
    return top_k


class TopKLD(DistillLoss):
    """Reverse KL on the teacher's top-K classes plus forward KL on the rest (paper Eq. 7)."""

    name: ClassVar[str] = "topkld"
    kind: ClassVar = "logits"
    Options: ClassVar[type[PluginOptions]] = TopKLDOptions
    description: ClassVar[str] = "paper Eq. 7: reverse KL on the teacher's top-K classes + forward KL on the rest"

    def __init__(self, options: PluginOptions | None = None) -> None:
        super().__init__(options)
        #: K in use; ``options.k``, or the model's sampling top-k after ``prepare``.
        self.k: int | None = self.options.k
        #: Where ``k`` came from: "option", "sampler", or "fallback" (fraction of V at call time).
        self.k_source = "option" if self.k is not None else "fallback"

    def prepare(self, model: GenerativeModel) -> None:
        """Take K from the model's sampling top-k unless the option fixes it."""
        if self.options.k is not None:
            return
        k = resolve_k(getattr(model, "sampler", None))
        self.k, self.k_source = (k, "sampler") if k is not None else (None, "fallback")

    def k_for(self, vocab: int) -> int:
        """The split size used for a vocabulary of ``vocab`` classes."""
        k = self.k if self.k is not None else round(self.options.fallback_fraction * vocab)
        return max(0, min(int(k), vocab))

    def __call__(self, student: Tensor, teacher: Tensor) -> Tensor:
        check_pair(student, teacher)
        temp = self.options.temperature
        lp_t = log_probs(teacher.detach(), temp)
        lp_s = log_probs(student, temp)
        head = top_k_mask(lp_t, self.k_for(lp_t.shape[-1]))
        per_class = torch.where(head, kl_terms(lp_s, lp_t), kl_terms(lp_t, lp_s))
        if self.options.form == "generalized":
            # p log(p/q) - p + q on each side: makes every term >= 0 with its minimum at p = q.
            p_t, p_s = lp_t.exp(), lp_s.exp()
            per_class = per_class + torch.where(head, p_t - p_s, p_s - p_t)
        return token_mean(per_class)


@hookimpl
def register_losses(register):
    """Register TopKLD."""
    register(TopKLD)
