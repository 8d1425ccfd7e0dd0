import pytest

from bitscale.precision import NumberFormat, Precision, compute_bits, model_bits


@pytest.mark.parametrize(
    "text,w,a,label",
    [
        ("W16A16", "fp16", "fp16", "W16A16"),
        ("W8A16", "int8", "fp16", "W8A16"),
        ("w4a16", "int4", "fp16", "W4A16"),
        ("W3A16", "int3", "fp16", "W3A16"),
        ("W8A8", "int8", "int8", "W8A8"),
        ("W4A8", "int4", "int8", "W4A8"),
        ("W4A8:fp", "fp4_e2m1", "fp8_e4m3", "W4A8:fp"),
        ("W6A16:fp", "fp6_e3m2", "fp16", "W6A16:fp"),
        ("w=fp4_e2m1,a=fp8_e4m3", "fp4_e2m1", "fp8_e4m3", "W4A8:fp"),
        ("w=fp8_e5m2,a=int8", "fp8_e5m2", "int8", "w=fp8_e5m2,a=int8"),
        ("w=int4", "int4", "fp16", "W4A16"),
    ],
)
def test_parse(text, w, a, label):
    p = Precision.parse(text)
    assert (str(p.weights), str(p.activations), p.label) == (w, a, label)
    assert Precision.parse(p.label) == p  # labels round-trip


@pytest.mark.parametrize(
    "text,needle",
    [
        ("W0A8", "0 bits"),
        ("W4A33", "33 bits"),
        ("W3A16:fp", "no floating-point format has 3"),
        ("4bit", "cannot parse"),
        ("w=int4,w=int8", "cannot parse"),
        ("w=fp5_e9m9", "unknown number format"),
    ],
)
def test_parse_errors_say_why(text, needle):
    with pytest.raises(ValueError, match=needle):
        Precision.parse(text)


def test_flags_and_bits():
    assert Precision.parse("W16A16").is_full and Precision.parse("W4A16").weight_only
    assert not Precision.parse("W4A8").weight_only
    assert NumberFormat("fp6_e2m3").bits == 6
    # The paper's section 3: MT = N x w_bits, CT = N x w_bits x a_bits.
    p = Precision.parse("W4A8")
    assert model_bits(1000, p) == 4000 and compute_bits(1000, p) == 32000
