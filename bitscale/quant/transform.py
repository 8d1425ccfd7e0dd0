"""``TransformLinear``: a ``QuantLinear`` whose input goes through an exact, invertible transform.

    x' = ((x - delta) / s) R          (shift, smoothing, rotation; each optional)
    y  = linear(Qa(x'), Q(W'), b')    with  W' = (W diag(s)) R,  b' = b + W delta

Since ``R`` is orthogonal, ``x' W'^T + b' = x W^T + b`` exactly in full precision: the transform
only changes what the quantizers see (SmoothQuant/OmniQuant/PTQ4ARVG move outliers into the
weights; QuaRot/QuIP#/SpinQuant rotations spread them over all channels).

The weight side is always fused into ``W'``/``b'`` at construction. The input side is applied
*online* by the layer (``online`` names the parts it applies), unless the caller has already
folded that part into whatever produces the input (a norm's weight, an AdaLN projection, the
previous layer's output rotation), in which case the layer leaves it out. Online parts cost
storage, counted in ``storage_bits``: 16 bits per channel for ``s`` and ``delta``, the rotation's
own ``storage_bits`` (1 bit per sign plus any dense factor).

A rotation shared by several layers (q/k/v read one input) is counted once per layer: the
accounting is per layer, conservative by design.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bitscale.quant.activation import ActQuantizer
from bitscale.quant.formats import QuantSpec, weight_storage_bits
from bitscale.quant.hadamard import Rotation
from bitscale.quant.linear import QuantLinear

PARTS = ("shift", "smooth", "rotation")


def _absent(shift: Tensor | None, smooth: Tensor | None) -> set[str]:
    return {n for n, v in (("shift", shift), ("smooth", smooth)) if v is None}


def fuse_weight(
    weight: Tensor,
    bias: Tensor | None,
    shift: Tensor | None = None,
    smooth: Tensor | None = None,
    rotation: Rotation | None = None,
) -> tuple[Tensor, Tensor | None]:
    """``(W diag(s)) R`` and ``b + W delta`` in float64, returned in ``weight``'s dtype."""
    w = weight.detach().double()
    b = None if bias is None else bias.detach().double()
    if shift is not None:
        corr = w @ shift.detach().double().to(w.device)
        b = corr if b is None else b + corr
    if smooth is not None:
        w = w * smooth.detach().double().to(w.device)
    if rotation is not None:
        w = rotation.to(w.device)(w)
    return w.to(weight.dtype), None if b is None else b.to(weight.dtype)


class TransformLinear(QuantLinear):
    """``QuantLinear`` with an input transform (shift, smoothing, rotation), see the module docstring."""

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, *, rotation: Rotation | None = None, **kwargs
    ) -> None:
        super().__init__(in_features, out_features, bias, **kwargs)
        #: Online rotation of the input (``None`` when fused upstream or absent).
        self.rotation = rotation

    @classmethod
    def from_linear(  # type: ignore[override]
        cls,
        linear: nn.Linear,
        *,
        shift: Tensor | None = None,
        smooth: Tensor | None = None,
        rotation: Rotation | None = None,
        online: Iterable[str] = PARTS,
        weight_spec: QuantSpec | None = None,
        act_quantizer: ActQuantizer | None = None,
        reuse_storage: bool = True,
    ) -> TransformLinear:
        """Wrap ``linear`` with the transform; round the fused weight with ``weight_spec`` (RTN) if given.

        ``online``: which of ``"shift"``, ``"smooth"``, ``"rotation"`` the layer applies to its
        input itself; the others must already be applied by the producer of the input (a folded
        smoothing with an online shift: the layer subtracts ``delta / s`` from the ``x / s`` it
        receives; a folded rotation needs shift and smoothing folded as well). Parts
        that are ``None`` are absent either way. For GPTQ-style rounding, build with
        ``weight_spec=None`` and call ``set_quantized_weight`` later (``input_hessian`` maps a
        Hessian of the raw input to the transformed one).
        """
        online = set(online)
        unknown = online - set(PARTS)
        if unknown:
            raise ValueError(f"unknown transform part(s) {sorted(unknown)}; choose from {PARTS}")
        if rotation is not None and "rotation" not in online and online & {"shift", "smooth"} - _absent(shift, smooth):
            raise ValueError(
                "a rotation folded upstream must come with the shift and smoothing folded too (they act before it)"
            )
        w, b = fuse_weight(linear.weight, linear.bias, shift, smooth, rotation)
        if b is not None and linear.bias is None:
            linear.bias = nn.Parameter(torch.zeros(linear.out_features, dtype=w.dtype, device=w.device))
        dtype, dev = linear.weight.dtype, linear.weight.device
        q = cls(
            linear.in_features,
            linear.out_features,
            bias=linear.bias is not None,
            rotation=rotation if "rotation" in online else None,
            act_quantizer=act_quantizer,
            device=torch.device("meta"),
            dtype=dtype,
        )
        if reuse_storage:
            q.weight, q.bias = linear.weight, linear.bias
        else:
            q.weight = nn.Parameter(linear.weight.detach().clone())
            q.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone())
        with torch.no_grad():
            q.weight.copy_(w)
            if b is not None:
                q.bias.copy_(b)
        if shift is not None and "shift" in online:
            # with the smoothing already applied upstream the input arrives as x / s: subtract delta / s
            folded_smooth = smooth is not None and "smooth" not in online
            online_shift = shift.detach().double() / (smooth.detach().double() if folded_smooth else 1.0)
            q.shift = online_shift.to(device=dev, dtype=dtype).clone()
        if smooth is not None and "smooth" in online:
            q.smooth = smooth.detach().to(device=dev, dtype=dtype).clone()
        if weight_spec is not None:
            q.quantize_weight_(weight_spec)
        return q

    # ------------------------------------------------------------------ use

    def transform_input(self, x: Tensor) -> Tensor:
        """The online part of the transform: what the activation quantizer and the matmul see."""
        if self.shift is not None:
            x = x - self.shift
        if self.smooth is not None:
            x = x / self.smooth
        if self.rotation is not None:
            x = self.rotation(x)
        return x

    def input_hessian(self, h: Tensor) -> Tensor:
        """Map ``H = 2/N X^T X`` of the raw layer input to that of the transformed input.

        Exact for smoothing and rotation (``T^T H T`` with ``T = diag(1/s) R``); an online shift
        would need the input mean as well, so it is refused.
        """
        if self.shift is not None:
            raise ValueError("input_hessian cannot map a Hessian through an online shift (needs the input mean)")
        t = h.double()
        if self.smooth is not None:
            inv = 1.0 / self.smooth.double().to(t.device)
            t = t * inv.unsqueeze(0) * inv.unsqueeze(1)
        if self.rotation is not None:
            rot = self.rotation.to(t.device)
            t = rot(rot(t).t().contiguous())  # R^T H R, with H symmetric
        return t.to(h.dtype)

    def set_quantized_weight(self, weight: Tensor, spec: QuantSpec | None) -> None:
        """Install an already-rounded fused weight (e.g. from GPTQ) and record its storage."""
        with torch.no_grad():
            self.weight.copy_(weight.to(self.weight.dtype))
        if spec is not None:
            self.weight_bits = weight_storage_bits((self.out_features, self.in_features), spec)
            self.weight_label = str(spec)

    @property
    def storage_bits(self) -> int:
        """Weight bits, online smoothing/shift vectors (16 bits per channel each), online rotation."""
        rot = self.rotation.storage_bits if self.rotation is not None else 0
        return super().storage_bits + rot

    def forward(self, x: Tensor) -> Tensor:
        x = self.transform_input(x)
        if self.act_quantizer is not None:
            x = self.act_quantizer(x)
        return F.linear(x, self.effective_weight(), self.bias)

    def extra_repr(self) -> str:
        parts = [super().extra_repr()]
        if self.shift is not None:
            parts.append("shifted")
        if self.rotation is not None:
            parts.append(f"rotation={self.rotation.kind}")
        return ", ".join(parts)
