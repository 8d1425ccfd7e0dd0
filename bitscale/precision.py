"""Bit settings: ``Precision.parse("W4A8")``, its number formats, and the paper's bit budgets.

Grammar (case-insensitive):
  ``W{w}A{a}``               integer weights and activations (``W16A16`` = full precision)
  ``W{w}A{a}:fp``            floating-point ExMy at those widths (fp8 e4m3, fp6 e3m2, fp4 e2m1)
  ``W{w}A{a}:mx``            OCP MX block formats at those widths (mxfp8_e4m3, mxfp6_e2m3, mxfp4_e2m1)
  ``w=FORMAT,a=FORMAT``      explicit formats, e.g. ``w=fp4_e2m1,a=fp8_e4m3``, ``w=int4,a=fp16``,
                             ``w=mxfp4,a=mxfp8`` or ``w=nvfp4,a=nvfp4``
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Widths a quantizer can be asked for; 16 means "left in full precision".
ALLOWED_BITS = (2, 3, 4, 5, 6, 7, 8, 16)

# Floating-point ExMy formats with (exponent bits, mantissa bits); one sign bit each.
FP_FORMATS: dict[str, tuple[int, int]] = {
    "fp8_e4m3": (4, 3),
    "fp8_e5m2": (5, 2),
    "fp6_e3m2": (3, 2),
    "fp6_e2m3": (2, 3),
    "fp4_e2m1": (2, 1),
}
# The format ``W{b}A{b}:fp`` picks at each width (the OCP MX defaults).
DEFAULT_FP_AT_WIDTH = {8: "fp8_e4m3", 6: "fp6_e3m2", 4: "fp4_e2m1"}


@dataclass(frozen=True)
class BlockScaling:
    """How a block-scaled ("microscaling") format shares scales.

    ``element``: the format of each value (an fp ExMy name, or ``"int8"`` for MXINT8's 2's
    complement with 6 fraction bits); ``size``: values per shared scale, consecutive along the
    last (input-channel) dimension; ``scale``: ``"e8m0"`` (a power of two, 8 bits: OCP MX) or
    ``"e4m3"`` (an FP8 E4M3 value, 8 bits: NVFP4); ``tensor_scale_bits``: an extra fp32 scale per
    tensor (NVFP4's second level), 0 if none.
    """

    element: str
    size: int
    scale: str
    tensor_scale_bits: int = 0

    @property
    def scale_bits(self) -> int:
        return 8


#: Block-scaled formats: the OCP Microscaling (MX) v1.0 formats and NVIDIA's NVFP4.
BLOCK_FORMATS: dict[str, BlockScaling] = {
    "mxfp8_e4m3": BlockScaling("fp8_e4m3", 32, "e8m0"),
    "mxfp8_e5m2": BlockScaling("fp8_e5m2", 32, "e8m0"),
    "mxfp6_e3m2": BlockScaling("fp6_e3m2", 32, "e8m0"),
    "mxfp6_e2m3": BlockScaling("fp6_e2m3", 32, "e8m0"),
    "mxfp4_e2m1": BlockScaling("fp4_e2m1", 32, "e8m0"),
    "mxint8": BlockScaling("int8", 32, "e8m0"),
    "nvfp4": BlockScaling("fp4_e2m1", 16, "e4m3", tensor_scale_bits=32),
}
#: Short names (the element format with most mantissa at that width, as torchao's defaults).
BLOCK_ALIASES = {"mxfp8": "mxfp8_e4m3", "mxfp6": "mxfp6_e2m3", "mxfp4": "mxfp4_e2m1"}
# The format ``W{b}A{b}:mx`` picks at each width.
DEFAULT_MX_AT_WIDTH = {8: "mxfp8_e4m3", 6: "mxfp6_e2m3", 4: "mxfp4_e2m1"}


@dataclass(frozen=True, order=True)
class NumberFormat:
    """One number format: ``int{b}``, an fp ExMy format, a block-scaled (MX/NVFP4) format, or ``fp16``."""

    name: str

    @property
    def kind(self) -> str:
        """``"int"``, ``"fp"`` (a quantized float format), ``"mx"`` (block-scaled) or ``"full"``."""
        if self.name == "fp16":
            return "full"
        if self.name in BLOCK_FORMATS:
            return "mx"
        return "fp" if self.name in FP_FORMATS else "int"

    @property
    def block(self) -> BlockScaling | None:
        """Shared-scale layout of a block-scaled format, ``None`` for the others."""
        return BLOCK_FORMATS.get(self.name)

    @property
    def bits(self) -> int:
        """Bits per value (the element; shared scales are counted by the bit accounting)."""
        if self.name == "fp16":
            return 16
        if self.name in BLOCK_FORMATS:
            return NumberFormat(BLOCK_FORMATS[self.name].element).bits
        if self.name in FP_FORMATS:
            e, m = FP_FORMATS[self.name]
            return 1 + e + m
        return int(self.name[3:])

    @property
    def exponent_mantissa(self) -> tuple[int, int] | None:
        return FP_FORMATS.get(self.name)

    @classmethod
    def parse(cls, text: str) -> NumberFormat:
        t = text.strip().lower()
        if t in ("fp16", "bf16", "fp32", "full", "16"):
            return cls("fp16")
        if t in FP_FORMATS or t in BLOCK_FORMATS:
            return cls(t)
        if t in BLOCK_ALIASES:
            return cls(BLOCK_ALIASES[t])
        m = re.fullmatch(r"int(\d+)", t)
        if m:
            b = int(m.group(1))
            _check_bits(b, "integer format")
            return cls("fp16") if b == 16 else cls(f"int{b}")
        raise ValueError(
            f"unknown number format {text!r}; use int2..int8, fp16, one of {', '.join(FP_FORMATS)}, "
            f"or a block format: {', '.join([*BLOCK_FORMATS, *BLOCK_ALIASES])}"
        )

    def __str__(self) -> str:
        return self.name


def _check_bits(b: int, what: str) -> None:
    if b not in ALLOWED_BITS:
        raise ValueError(f"{what} has {b} bits; allowed widths are {', '.join(map(str, ALLOWED_BITS))}")


def _fmt_for(bits: int, kind: str, role: str) -> NumberFormat:
    if bits == 16:
        return NumberFormat("fp16")
    if kind == "int":
        return NumberFormat(f"int{bits}")
    if kind == "mx":
        if bits not in DEFAULT_MX_AT_WIDTH:
            raise ValueError(
                f"no MX format has {bits} {role} bits; MX widths are 4, 6 and 8 "
                f"(or name one: {', '.join(BLOCK_FORMATS)})"
            )
        return NumberFormat(DEFAULT_MX_AT_WIDTH[bits])
    if bits not in DEFAULT_FP_AT_WIDTH:
        raise ValueError(
            f"no floating-point format has {bits} {role} bits; fp widths are 4, 6 and 8 "
            f"(or name one: {', '.join(FP_FORMATS)})"
        )
    return NumberFormat(DEFAULT_FP_AT_WIDTH[bits])


@dataclass(frozen=True)
class Precision:
    """A bit setting for weights (``w``) and activations (``a``)."""

    weights: NumberFormat
    activations: NumberFormat

    @property
    def w_bits(self) -> int:
        return self.weights.bits

    @property
    def a_bits(self) -> int:
        return self.activations.bits

    @property
    def is_full(self) -> bool:
        """True for the W16A16 reference row."""
        return self.w_bits == 16 and self.a_bits == 16

    @property
    def weight_only(self) -> bool:
        return self.a_bits == 16

    @classmethod
    def parse(cls, text: str) -> Precision:
        """Parse ``W4A8``, ``W4A8:fp`` or ``w=fp4_e2m1,a=fp8_e4m3``; ValueError says what is wrong."""
        if not isinstance(text, str):
            raise ValueError(f"precision must be a string like 'W4A8', got {text!r}")
        t = text.strip()
        m = re.fullmatch(r"[Ww](\d+)[Aa](\d+)(?::(int|fp|mx))?", t, flags=re.IGNORECASE)
        if m:
            w, a, kind = int(m.group(1)), int(m.group(2)), (m.group(3) or "int").lower()
            _check_bits(w, f"{t!r}: weights")
            _check_bits(a, f"{t!r}: activations")
            return cls(_fmt_for(w, kind, "weight"), _fmt_for(a, kind, "activation"))
        if "=" in t:
            parts = {}
            for item in t.split(","):
                key, sep, value = item.partition("=")
                key = key.strip().lower()
                if not sep or key not in ("w", "a") or key in parts:
                    raise ValueError(f"cannot parse precision {text!r}: expected 'w=FORMAT,a=FORMAT'")
                parts[key] = NumberFormat.parse(value)
            return cls(parts.get("w", NumberFormat("fp16")), parts.get("a", NumberFormat("fp16")))
        raise ValueError(
            f"cannot parse precision {text!r}: expected W<bits>A<bits> (e.g. W4A8, W4A16, W8A8:fp, W4A8:mx) "
            "or w=FORMAT,a=FORMAT"
        )

    @property
    def label(self) -> str:
        """Canonical text, stable across spellings: ``W4A8``, ``W4A8:fp``, ``w=fp4_e2m1,a=fp8_e4m3``."""
        w, a = self.weights, self.activations
        head = f"W{w.bits}A{a.bits}"
        kinds = {f.kind for f in (w, a)} - {"full"}
        if kinds <= {"int"}:
            return head
        if kinds == {"fp"} and all(f.kind == "full" or DEFAULT_FP_AT_WIDTH.get(f.bits) == f.name for f in (w, a)):
            return head + ":fp"
        if kinds == {"mx"} and all(f.kind == "full" or DEFAULT_MX_AT_WIDTH.get(f.bits) == f.name for f in (w, a)):
            return head + ":mx"
        return f"w={w},a={a}"

    def __str__(self) -> str:
        return self.label


def model_bits(num_params: int, precision: Precision) -> int:
    """Total model bits MT = N_params x w_bits (paper, section 3)."""
    return num_params * precision.w_bits


def compute_bits(num_params: int, precision: Precision) -> int:
    """Total compute bits CT = N_params x w_bits x a_bits (paper, section 3)."""
    return num_params * precision.w_bits * precision.a_bits
