import torch

from bitscale.precision import Precision
from bitscale.testing.contract_checks import QuantizerContract
from bitscale.testing.toy import ToyModel
from bitscale_quantizer_example import Pow2Quantizer


class TestPow2Contract(QuantizerContract):
    quantizer_cls = Pow2Quantizer


def test_weights_are_powers_of_two_per_channel():
    model = ToyModel()
    Pow2Quantizer().quantize(model, Precision.parse("W4A16"), [])
    w = model.module.blocks[0].fc1.weight
    scale = w.abs().amax(dim=1, keepdim=True)
    ratios = (w.abs() / scale)[w != 0]
    k = -torch.log2(ratios)
    assert torch.allclose(k, k.round(), atol=1e-5)
    assert int(k.max()) <= 2 ** 3 - 2  # 7 magnitudes at 4 bits
