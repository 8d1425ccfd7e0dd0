"""SVDQuant: rank cap, bits of the 16-bit branch, alternating refits, exact FP smoothing."""

import pytest
import torch

from bitscale.plugins.quantizers.svdquant import SVDQuant, branch_rank_cap
from bitscale.precision import Precision
from bitscale.quant.formats import QuantSpec, weight_storage_bits
from bitscale.quant.lowrank import LowRankLinear, lowrank_bits
from bitscale.testing.toy import LinearModel


def test_branch_rank_cap_by_hand():
    # 4096x4096 at 0.5 bits/weight: 0.5 * 4096^2 / (16 * 8192) = 64 >= the default rank 32
    assert branch_rank_cap((4096, 4096), 0.5) == 64
    # 128x256: 0.5 * 32768 / (16 * 384) = 2.67 -> 2
    assert branch_rank_cap((128, 256), 0.5) == 2
    assert branch_rank_cap((8, 8), 100.0) == 8  # never above full rank


@pytest.mark.parametrize("iters", [1, 3])
def test_svdquant_w4a4_bits_and_branch(iters):
    m = LinearModel(256, 128, outlier_channels=4)
    cal = m.calibration_batches(4, torch.Generator().manual_seed(0))
    rep = SVDQuant(SVDQuant.Options(rank=32, max_branch_bits=1.0, iters=iters)).quantize(
        m, Precision.parse("W4A4"), cal, generator=torch.Generator().manual_seed(0)
    )
    lin = m.linear
    assert isinstance(lin, LowRankLinear) and lin.rank == 5  # 1.0 * 32768 / 6144 = 5.3
    spec = QuantSpec("int4", "group", 64)
    expected = (
        weight_storage_bits((128, 256), spec) + lowrank_bits(128, 256, 5) + (16 * 256 if lin.smooth is not None else 0)
    )
    assert rep.effective_weight_bits == pytest.approx(expected / (128 * 256))


def test_svdquant_full_rank_without_activation_quant_is_exact():
    m, ref = LinearModel(32, 16), LinearModel(32, 16)
    cal = m.calibration_batches(2, torch.Generator().manual_seed(0))
    SVDQuant(SVDQuant.Options(rank=16, max_branch_bits=100.0)).quantize(m, Precision.parse("W4A16"), cal)
    x = m.calibration_batches(1, torch.Generator().manual_seed(1))[0]
    with torch.no_grad():
        assert torch.allclose(m.forward_batch(x), ref.forward_batch(x), atol=1e-4)
