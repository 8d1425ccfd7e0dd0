"""What a leaderboard row measured beyond its precision: the activation scheme and the sampling coupling.

Two rows named ``W8A8 rtn`` can mean very different experiments: dynamic per-token A8 is nearly
free on the tiny zoo while static per-tensor A8 (one calibrated range per layer) is not, and a
quantized cell sampled with the same random draws as its W16A16 twin ("coupled") is compared far
more precisely than one sampled independently. So every row says both.

* **Activation scheme** comes from the run's quantizer options (``act_granularity``,
  ``act_symmetric``: ``bitscale.harness.quant_recipe.ActOptions``, shared by every built-in quantizer).
  A16 rows quantize no activation. A quantizer without those options is reported as such, not
  guessed.
* **Sampling coupling** comes from the row's protocol details (``sampling_coupling``, or
  ``coupling`` inside the ``sampler`` details) when the protocol records it; otherwise the
  samples were drawn independently of the W16A16 twin's, and the row says ``independent``.
"""

from __future__ import annotations

from typing import Any

from bitscale.leaderboard.results import parse_precision

#: Protocol-detail keys that may carry the sampling coupling (top level, then inside ``sampler``).
COUPLING_KEYS = ("sampling_coupling", "coupling", "coupled_sampling")


def activation_scheme(precision: str, quantizer_options: dict[str, Any] | None, source: str = "measured") -> str:
    """``"dynamic per-token, asymmetric min-max"``, ``"static per-tensor (calibrated), ..."``, ``"none (A16)"``."""
    p = parse_precision(precision)
    if p.activations.kind == "full":
        return "none (A16)"
    if source == "paper":
        return "as published (not stated per row)"
    opts = quantizer_options or {}
    gran = opts.get("act_granularity")
    if gran is None:
        return "not reported by the quantizer"
    base = {"token": "dynamic per-token", "tensor": "static per-tensor (calibrated)"}.get(gran, str(gran))
    if p.activations.kind == "fp":
        return f"{base}, symmetric ({p.activations.name})"
    return f"{base}, {'symmetric' if opts.get('act_symmetric') else 'asymmetric min-max'}"


def sampling_coupling(details: dict[str, Any] | None) -> str:
    """The protocol's sampling coupling (e.g. ``coupled``), ``independent`` when it records none."""
    details = details or {}
    places = [details]
    if isinstance(details.get("sampler"), dict):
        places.append(details["sampler"])
    for place in places:
        for key in COUPLING_KEYS:
            value = place.get(key)
            if value is None:
                continue
            if isinstance(value, bool):
                return "coupled" if value else "independent"
            if isinstance(value, dict):  # e.g. {"mode": "coupled", "noise": "gumbel"}
                return ", ".join(f"{k}={v}" for k, v in value.items())
            return str(value)
    return "independent"


def row_protocol(
    precision: str, quantizer_options: dict[str, Any] | None, details: dict[str, Any] | None, source: str = "measured"
) -> str:
    """One line per row: ``activations: ...; sampling: ...``."""
    sampling = "as published" if source == "paper" else sampling_coupling(details)
    return f"activations: {activation_scheme(precision, quantizer_options, source)}; sampling: {sampling}"
