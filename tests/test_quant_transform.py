"""Shared rotation / input-transform / low-rank machinery (bitscale.quant.hadamard, transform, lowrank)."""

import math

import pytest
import torch
from torch import nn

from bitscale.quant.formats import QuantSpec, fake_quant_weight, weight_storage_bits
from bitscale.quant.hadamard import Rotation, fwht, hadamard_matrix, split_pow2
from bitscale.quant.lowrank import LowRankLinear, lowrank_bits, lowrank_quantize
from bitscale.quant.transform import TransformLinear


def test_fwht_matches_sylvester_matrix_by_hand():
    # H_4 by hand (Sylvester): rows ++++, +-+-, ++--, +--+
    h4 = torch.tensor([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]], dtype=torch.float64)
    assert torch.equal(hadamard_matrix(4), h4)
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]], dtype=torch.float64)
    assert torch.allclose(fwht(x), torch.tensor([[10.0, -2.0, -4.0, 0.0]], dtype=torch.float64) / 2)
    with pytest.raises(ValueError, match="power-of-two"):
        fwht(torch.zeros(3))


@pytest.mark.parametrize("n", [1, 8, 64, 96, 192, 6])
def test_rotation_is_orthogonal_and_seeded(n):
    r = Rotation.hadamard(n, torch.Generator().manual_seed(1))
    m = r.as_matrix()
    assert torch.allclose(m @ m.t(), torch.eye(n, dtype=torch.float64), atol=1e-6)
    again = Rotation.hadamard(n, torch.Generator().manual_seed(1)).as_matrix()
    assert torch.equal(m, again)
    x = torch.randn(5, 3, n, dtype=torch.float64)
    assert torch.allclose(r(x), x @ m, atol=1e-10)
    odd, pow2 = split_pow2(n)
    assert r.storage_bits == n + (16 * odd * odd if odd > 1 else 0)


def test_hadamard_spreads_an_outlier():
    x = torch.zeros(1, 64)
    x[0, 5] = 8.0
    y = Rotation.hadamard(64, torch.Generator().manual_seed(0))(x)
    assert torch.allclose(y.abs(), torch.full_like(y, 1.0))  # 8 / sqrt(64) on every channel


def test_dense_rotation_checks_orthogonality():
    with pytest.raises(ValueError, match="not orthogonal"):
        Rotation.dense(torch.ones(3, 3))


def _linear(inp=64, out=32, bias=True, seed=0):
    torch.manual_seed(seed)
    lin = nn.Linear(inp, out, bias=bias)
    return lin


@pytest.mark.parametrize("inp", [64, 96])
@pytest.mark.parametrize("online", [("shift", "smooth", "rotation"), ("rotation",), ("shift", "rotation")])
def test_transform_linear_is_exact_in_full_precision(inp, online):
    g = torch.Generator().manual_seed(0)
    lin = _linear(inp, bias=False)
    ref = nn.Linear(inp, 32, bias=False)
    ref.load_state_dict(lin.state_dict())
    shift = torch.randn(inp, generator=g)
    smooth = torch.rand(inp, generator=g) + 0.5
    rot = Rotation.hadamard(inp, g)
    x = torch.randn(4, 7, inp, generator=g)
    q = TransformLinear.from_linear(lin, shift=shift, smooth=smooth, rotation=rot, online=online)
    # parts not online must be applied by the producer of the input
    xin = x
    if "shift" not in online:
        xin = xin - shift
    if "smooth" not in online:
        xin = xin / smooth  # an online shift then applies in these units (delta / s)
    if "rotation" not in online:
        xin = rot(xin)
    assert torch.allclose(q(xin), ref(x), atol=1e-4)
    extra = 16 * inp * sum(p in online for p in ("shift", "smooth")) + (rot.storage_bits if "rotation" in online else 0)
    assert q.storage_bits == 16 * inp * 32 + extra


def test_transform_linear_input_hessian():
    g = torch.Generator().manual_seed(0)
    lin = _linear(64)
    smooth = torch.rand(64, generator=g) + 0.5
    q = TransformLinear.from_linear(lin, smooth=smooth, rotation=Rotation.hadamard(64, g))
    x = torch.randn(200, 64, generator=g)
    h = 2 / 200 * x.t() @ x
    xt = q.transform_input(x)
    assert torch.allclose(q.input_hessian(h), 2 / 200 * xt.t() @ xt, atol=1e-4)


def test_transform_linear_rtn_counts_bits():
    spec = QuantSpec("int4", "group", 32)
    q = TransformLinear.from_linear(_linear(64), rotation=Rotation.hadamard(64), weight_spec=spec)
    assert q.weight_bits == weight_storage_bits((32, 64), spec)
    assert q.storage_bits == q.weight_bits + 64  # 64 sign bits, no dense factor


def test_lowrank_full_rank_reproduces_the_weight_exactly():
    w = torch.randn(24, 40, generator=torch.Generator().manual_seed(0))
    split = lowrank_quantize(w, rank=24, quantize=lambda r: fake_quant_weight(r, QuantSpec("int4")))
    assert torch.allclose(split.up @ split.down + split.residual, w, atol=1e-5)
    assert split.residual.abs().max() < 1e-4  # nothing left for the quantizer


def test_lowrank_alternating_never_worse_and_branch_counts():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(32, 64, generator=g)
    w[:, 3] *= 30  # an outlier column: what a low-rank branch should catch
    rtn = lambda r: fake_quant_weight(r, QuantSpec("int3", "group", 16))  # noqa: E731
    one = lowrank_quantize(w, 4, rtn, iters=1)
    five = lowrank_quantize(w, 4, rtn, iters=5)
    assert min(five.errors) <= one.errors[0] + 1e-9
    plain = float((w - rtn(w)).norm() / w.norm())
    assert one.errors[0] < plain
    assert lowrank_bits(32, 64, 4) == 16 * 4 * 96


def test_lowrank_linear_forward_and_bits():
    g = torch.Generator().manual_seed(0)
    lin = _linear(64, 32)
    ref = nn.Linear(64, 32)
    ref.load_state_dict(lin.state_dict())
    smooth = torch.rand(64, generator=g) + 0.5
    t = TransformLinear.from_linear(lin, smooth=smooth)
    split = lowrank_quantize(t.weight.detach(), 8, lambda r: r)  # identity "quantizer": exact
    spec = QuantSpec("int4", "group", 64)
    bits = weight_storage_bits((32, 64), spec)
    q = LowRankLinear.from_transform(t, split, bits, str(spec))
    x = torch.randn(3, 64, generator=g)
    assert torch.allclose(q(x), ref(x), atol=1e-4)
    assert q.storage_bits == bits + 16 * 64 + lowrank_bits(32, 64, 8)
    assert math.isclose(q.storage_bits / (32 * 64), (bits + 1024 + 16 * 8 * 96) / 2048)


def test_docs_plugins_rotation_example_runs():
    """The rotation quantizer of docs/plugins.md, as written there."""
    from typing import ClassVar

    from bitscale import Precision, Quantizer, QuantJob, QuantReport
    from bitscale.harness.quant_recipe import QuantOptions, act_quantizer, make_report, weight_spec
    from bitscale.quant import Rotation, TransformLinear, set_submodule
    from bitscale.testing.toy import ToyModel

    class MyRotation(Quantizer[QuantOptions]):
        name: ClassVar[str] = "my-rotation"
        weight_kinds: ClassVar = frozenset({"int"})
        activation_kinds: ClassVar = frozenset({"int"})

        def apply(self, job: QuantJob) -> QuantReport:
            spec = weight_spec(job.precision.weights, self.options)
            for name, lin in job.model.quant_layers().items():
                rot = Rotation.hadamard(lin.in_features, job.generator)  # seeded by the cell
                q = TransformLinear.from_linear(
                    lin, rotation=rot, weight_spec=spec, act_quantizer=act_quantizer(job.precision, self.options)
                )
                set_submodule(job.model.module, name, q)
            return make_report(job.model)

    model = ToyModel()
    rep = MyRotation().quantize(model, Precision.parse("W4A8"), [], generator=torch.Generator().manual_seed(0))
    assert rep.effective_weight_bits > 4 and rep.layers == len(model.quant_layers())
