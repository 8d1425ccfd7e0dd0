import torch
from bitscale_quantizer_example import Pow2Quantizer

from bitscale import Precision
from bitscale.testing import QuantizerContract, ToyModel


class TestPow2Contract(QuantizerContract):
    """bitscale's contract, one test per precision (`pytest -v`: test_quantizes[W2A16] ... [W8A16])."""

    quantizer_cls = Pow2Quantizer


def test_weights_are_powers_of_two_per_channel():
    model = ToyModel()
    Pow2Quantizer().quantize(model, Precision.parse("W4A16"), [])
    w = model.module.blocks[0].fc1.weight
    scale = w.abs().amax(dim=1, keepdim=True)
    ratios = (w.abs() / scale)[w != 0]
    k = -torch.log2(ratios)
    assert torch.allclose(k, k.round(), atol=1e-5)
    assert int(k.max()) <= 2**3 - 2  # 7 magnitudes at 4 bits


def test_one_real_cell(bitscale_run_cell, register_plugin):
    """The quantizer inside bitscale: a shipped tiny-zoo model, quantized, sampled and scored (seconds)."""
    import bitscale_quantizer_example

    register_plugin(bitscale_quantizer_example, name="pow2")
    run = bitscale_run_cell("pow2", "W4A16", num_samples=50)
    assert run["status"] == "ok" and run["fid"] > 0
    assert 4 < run["effective_weight_bits"] < 4.5  # codes + one 16-bit scale per output channel
