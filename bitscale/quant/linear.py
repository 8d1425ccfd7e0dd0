"""``QuantLinear``: the drop-in replacement for ``nn.Linear`` that every bitscale quantizer installs.

y = linear(Qa((x - delta) / s), Qw(W * s), b + W delta)

- ``W``: the weight. PTQ methods store it already fake-quantized (``weight_quantizer=None``),
  so inference costs one plain matmul. QAT methods attach a ``WeightQuantizer`` instead and the
  weight is fake-quantized at every forward, with a straight-through estimator so gradients reach
  the full-precision weight (and the scales, if learnable).
- ``s``: optional per-input-channel smoothing factor (SmoothQuant, OmniQuant's equivalent
  transformation) when it could not be folded into a preceding op; the division of ``x`` and
  the multiplication of ``W`` cancel exactly in full precision. ``delta``: optional
  per-channel shift (OmniQuant's equivalent transformation), compensated in the bias.
- ``Qa``: optional ``ActQuantizer`` (dynamic per-token or static per-tensor).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bitscale.quant.activation import ActQuantizer
from bitscale.quant.formats import QuantSpec, fake_quant_weight, weight_qparams, weight_storage_bits


class WeightQuantizer(nn.Module):
    """Fake-quantizes a weight on the fly: min-max each call, or learnable scale/zero (LSQ-style)."""

    def __init__(self, spec: QuantSpec, learnable: bool = False, weight: Tensor | None = None) -> None:
        super().__init__()
        if spec.granularity == "token":
            raise ValueError("weights are quantized per tensor, channel or group, not per token")
        self.spec = spec
        self.learnable = learnable
        self.scale: Tensor | None = None
        self.zero: Tensor | None = None
        if learnable:
            if weight is None:
                raise ValueError("a learnable WeightQuantizer needs the weight to initialise its scales")
            scale, zero = weight_qparams(weight.detach(), spec)
            self.scale = nn.Parameter(scale.clone())
            self.zero = None if zero is None else nn.Parameter(zero.clone())

    def forward(self, w: Tensor) -> Tensor:
        if not self.learnable:
            return fake_quant_weight(w, self.spec)
        zero = self.zero
        if zero is not None:
            zero = zero + (torch.round(zero) - zero).detach()
        return fake_quant_weight(w, self.spec, self.scale.abs().clamp(min=1e-12), zero)

    def extra_repr(self) -> str:
        return f"{self.spec}" + (", learnable" if self.learnable else "")


class QuantLinear(nn.Linear):
    """A Linear with fake-quantized weight and (optionally) fake-quantized input activations.

    It subclasses ``nn.Linear`` so that ``GenerativeModel.quant_layers()`` (which lists
    ``nn.Linear``s) still finds the layers after quantization, and code that reads
    ``.weight``/``.in_features`` keeps working.

    Attributes reported upward: ``storage_bits`` (exact bits to store the quantized weight,
    including scales/zero-points/codebooks) and ``weight_label`` (a short text of the format).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        weight_quantizer: WeightQuantizer | None = None,
        act_quantizer: ActQuantizer | None = None,
        smooth: Tensor | None = None,
        shift: Tensor | None = None,
        storage_bits: int | None = None,
        weight_label: str = "",
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        # nn.Linear.__init__ would allocate and randomly initialise a weight we overwrite anyway.
        nn.Module.__init__(self)
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(out_features, device=device, dtype=dtype)) if bias else None
        self.weight_quantizer = weight_quantizer
        self.act_quantizer = act_quantizer
        # Always (possibly None) buffers, so a smoothing factor or shift can be installed later.
        self.register_buffer(
            "smooth", None if smooth is None else smooth.detach().to(device=device, dtype=dtype).clone()
        )
        self.register_buffer("shift", None if shift is None else shift.detach().to(device=device, dtype=dtype).clone())
        #: Exact bits of the stored weight: codes + scales + zero-points (+ codebooks).
        self.weight_bits = storage_bits if storage_bits is not None else 16 * in_features * out_features
        self.weight_label = weight_label

    @property
    def storage_bits(self) -> int:
        """``weight_bits`` plus the fp16 per-channel smoothing/shift vectors kept in the layer."""
        extra = sum(16 * self.in_features for v in (self.smooth, self.shift) if v is not None)
        return self.weight_bits + extra

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_linear(
        cls,
        linear: nn.Linear,
        *,
        weight: Tensor | None = None,
        weight_spec: QuantSpec | None = None,
        on_the_fly: bool = False,
        learnable_weight_scale: bool = False,
        act_quantizer: ActQuantizer | None = None,
        smooth: Tensor | None = None,
        storage_bits: int | None = None,
        reuse_storage: bool = True,
    ) -> QuantLinear:
        """Wrap ``linear``.

        ``weight``: an already fake-quantized weight (from GPTQ, GPTVQ, ...), used as is. Else,
        with ``weight_spec``: min-max round-to-nearest now (``on_the_fly=False``), or a
        ``WeightQuantizer`` applied at every forward (``on_the_fly=True``, for QAT).
        ``smooth``: per-input-channel factor folded in exactly (W * s, x / s); when ``weight``
        is given it must already include the factor.

        ``reuse_storage`` (default): the new layer takes over ``linear``'s weight and bias
        Parameters and writes the quantized values into them in place, so swapping every layer
        of a model never holds two copies of its weights (``linear`` must not be used after).
        """
        dtype = linear.weight.dtype
        w = linear.weight.detach()
        new_w: Tensor | None = None  # values to install, if they differ from linear's
        wq: WeightQuantizer | None = None
        if weight is not None:
            new_w = weight.detach()
        else:
            if smooth is not None:
                new_w = w * smooth.to(dtype)
            if weight_spec is not None and on_the_fly:
                wq = WeightQuantizer(
                    weight_spec, learnable=learnable_weight_scale, weight=new_w if new_w is not None else w
                )
            elif weight_spec is not None:
                new_w = fake_quant_weight(new_w if new_w is not None else w, weight_spec)
        if storage_bits is None and weight_spec is not None:
            storage_bits = weight_storage_bits(tuple(w.shape), weight_spec)
        q = cls(
            linear.in_features,
            linear.out_features,
            bias=linear.bias is not None,
            weight_quantizer=wq,
            act_quantizer=act_quantizer,
            storage_bits=storage_bits,
            weight_label=str(weight_spec) if weight_spec is not None else "",
            device=torch.device("meta"),  # parameters are adopted or copied below
            dtype=dtype,
        )
        if reuse_storage:
            q.weight, q.bias = linear.weight, linear.bias
        else:
            q.weight = nn.Parameter(w.clone(), requires_grad=linear.weight.requires_grad)
            q.bias = (
                None
                if linear.bias is None
                else nn.Parameter(linear.bias.detach().clone(), requires_grad=linear.bias.requires_grad)
            )
        if new_w is not None:
            with torch.no_grad():
                q.weight.copy_(new_w.to(dtype))
        if smooth is not None:
            q.smooth = smooth.detach().to(device=w.device, dtype=dtype).clone()
        return q

    # ------------------------------------------------------------------ use

    def effective_weight(self) -> Tensor:
        """The weight the matmul uses (fake-quantized, smoothing included)."""
        return self.weight if self.weight_quantizer is None else self.weight_quantizer(self.weight)

    def quantize_weight_(self, spec: QuantSpec) -> None:
        """Round the stored weight in place (min-max RTN under ``spec``) and record its storage."""
        with torch.no_grad():
            self.weight.copy_(fake_quant_weight(self.weight, spec))
        self.weight_bits = weight_storage_bits((self.out_features, self.in_features), spec)
        self.weight_label = str(spec)

    def freeze_weight(self) -> None:
        """Bake on-the-fly weight quantization into ``weight`` (after QAT) and drop the quantizer."""
        if self.weight_quantizer is not None:
            with torch.no_grad():
                self.weight.copy_(self.weight_quantizer(self.weight))
            self.weight_quantizer = None

    def forward(self, x: Tensor) -> Tensor:
        if self.shift is not None:
            x = x - self.shift
        if self.smooth is not None:
            x = x / self.smooth
        if self.act_quantizer is not None:
            x = self.act_quantizer(x)
        return F.linear(x, self.effective_weight(), self.bias)

    def extra_repr(self) -> str:
        parts = [
            f"in_features={self.in_features}",
            f"out_features={self.out_features}",
            f"bias={self.bias is not None}",
        ]
        if self.weight_label:
            parts.append(f"w={self.weight_label}")
        if self.smooth is not None:
            parts.append("smoothed")
        return ", ".join(parts)
