"""Activation fake-quantizer: dynamic per-token, or static per-tensor with a calibrated range."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bitscale.quant.formats import QuantSpec, choose_qparams, fake_quant, fake_quant_activation


class ActQuantizer(nn.Module):
    """Fake-quantizes the input of a ``QuantLinear``.

    - ``spec.granularity == "token"``: dynamic; each row (token) gets its own min-max scale at
      run time, nothing to calibrate.
    - ``spec.granularity == "tensor"``: static; one scale for all inputs. Call ``observe()``,
      run calibration data through the model (the input passes unchanged while the running
      min/max is recorded), then ``freeze()``. With ``learnable=True`` the frozen scale (and
      zero-point) become parameters trained through the STE (LSQ-style), for QAT/OmniQuant.
    """

    def __init__(self, spec: QuantSpec, learnable: bool = False) -> None:
        super().__init__()
        if spec.granularity not in ("token", "tensor"):
            raise ValueError(f"activation granularity must be 'token' or 'tensor', not {spec.granularity!r}")
        self.spec = spec
        self.learnable = learnable
        self.observing = False
        # Running range for static calibration; +-inf until something is observed.
        self.register_buffer("running_min", torch.tensor(float("inf")))
        self.register_buffer("running_max", torch.tensor(float("-inf")))
        # Static qparams: None until ``freeze``/``set_qparams`` (buffers, or parameters if learnable).
        self.register_buffer("scale", None)
        self.register_buffer("zero", None)

    @property
    def static(self) -> bool:
        return self.spec.granularity == "tensor"

    def observe(self) -> None:
        """Start recording the input range (static mode); inputs pass through unquantized."""
        self.observing = True

    def freeze(self) -> None:
        """Turn the observed range into a fixed scale/zero-point and start quantizing."""
        if not torch.isfinite(self.running_min) or not torch.isfinite(self.running_max):
            raise RuntimeError("static activation quantizer froze before observing any input")
        self.observing = False
        scale, zero = choose_qparams(self.running_min, self.running_max, self.spec)
        self.set_qparams(scale.detach(), None if zero is None else zero.detach())

    def set_qparams(self, scale: Tensor, zero: Tensor | None) -> None:
        """Install a static scale (and zero-point), as buffers or, if learnable, parameters."""
        for name, value in (("scale", scale), ("zero", zero)):
            self._parameters.pop(name, None)
            self._buffers.pop(name, None)
            if value is None:
                self.register_buffer(name, None)
            elif self.learnable:
                self.register_parameter(name, nn.Parameter(value.float().clone()))
            else:
                self.register_buffer(name, value.float().clone())

    def forward(self, x: Tensor) -> Tensor:
        if not self.static:
            return fake_quant_activation(x, self.spec)
        if self.running_min.device != x.device:
            self.to(x.device)  # quantizers are built on CPU and attached to layers on any device
        if self.observing:
            with torch.no_grad():
                xf = x.detach().float()
                self.running_min = torch.minimum(self.running_min, xf.amin())
                self.running_max = torch.maximum(self.running_max, xf.amax())
            return x
        if self.scale is None:
            raise RuntimeError("static activation quantizer used before calibration (call observe/freeze)")
        zero = self.zero
        if zero is not None and self.learnable:
            zero = zero + (torch.round(zero) - zero).detach()  # zero-points stay integers
        return fake_quant(x.float(), self.scale, zero, self.spec).to(x.dtype)

    def extra_repr(self) -> str:
        mode = "static" if self.static else "dynamic"
        return f"{self.spec}, {mode}" + (", learnable" if self.learnable else "")
