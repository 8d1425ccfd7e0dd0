"""QuantLinear, activation quantizer, module swapping and calibration hooks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bitscale.precision import NumberFormat
from bitscale.quant.activation import ActQuantizer
from bitscale.quant.capture import collect_hessians, input_channel_absmax, trace_input_groups
from bitscale.quant.formats import QuantSpec, fake_quant_activation, fake_quant_weight, weight_storage_bits
from bitscale.quant.linear import QuantLinear
from bitscale.quant.swap import set_submodule
from bitscale.testing.toy import ToyModel

INT4 = QuantSpec(NumberFormat("int4"), "channel")
INT8_TOKEN = QuantSpec(NumberFormat("int8"), "token")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: intra-op threads only contend on a shared 2-core machine (10x slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _lin(i: int = 32, o: int = 16) -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(i, o)


def test_frozen_weight_is_rtn_and_storage_bits_are_recorded() -> None:
    lin = _lin()
    q = QuantLinear.from_linear(lin, weight_spec=INT4, reuse_storage=False)
    x = torch.randn(3, 32)
    assert torch.allclose(q(x), F.linear(x, fake_quant_weight(lin.weight, INT4), lin.bias))
    assert q.weight_quantizer is None and q.storage_bits == weight_storage_bits((16, 32), INT4)


def test_swapping_reuses_the_weight_storage_by_default() -> None:
    lin = _lin()
    expected = fake_quant_weight(lin.weight.detach().clone(), INT4)
    ptr = lin.weight.data_ptr()
    q = QuantLinear.from_linear(lin, weight_spec=INT4)
    assert q.weight is lin.weight and q.weight.data_ptr() == ptr and q.bias is lin.bias
    assert torch.equal(q.weight, expected)
    # QAT mode adopts the full-precision weight unchanged
    lin2 = _lin()
    before = lin2.weight.detach().clone()
    q2 = QuantLinear.from_linear(lin2, weight_spec=INT4, on_the_fly=True)
    assert q2.weight is lin2.weight and torch.equal(q2.weight, before)


def test_activation_quantizer_is_applied_to_the_input() -> None:
    lin = _lin()
    q = QuantLinear.from_linear(lin, act_quantizer=ActQuantizer(INT8_TOKEN), reuse_storage=False)
    x = torch.randn(2, 5, 32)
    assert torch.allclose(q(x), lin(fake_quant_activation(x, INT8_TOKEN)))
    assert q.storage_bits == 16 * 16 * 32  # weights untouched: W16


def test_smoothing_is_an_exact_fold_in_full_precision() -> None:
    lin = _lin()
    s = torch.rand(32) * 10 + 0.1
    q = QuantLinear.from_linear(lin, smooth=s, reuse_storage=False)
    x = torch.randn(4, 32)
    assert torch.allclose(q(x), lin(x), rtol=1e-5, atol=1e-5)
    assert torch.allclose(q.weight, lin.weight * s)


def test_on_the_fly_weight_quantization_trains_through_ste() -> None:
    lin = _lin()
    q = QuantLinear.from_linear(
        lin, weight_spec=INT4, on_the_fly=True, learnable_weight_scale=True, reuse_storage=False
    )
    x = torch.randn(8, 32)
    assert torch.allclose(q(x), F.linear(x, fake_quant_weight(lin.weight, INT4), lin.bias), atol=1e-5)
    q(x).pow(2).sum().backward()
    assert q.weight.grad is not None and q.weight.grad.abs().sum() > 0
    assert q.weight_quantizer.scale.grad is not None and q.weight_quantizer.scale.grad.abs().sum() > 0
    before = q(x).detach()
    q.freeze_weight()
    assert q.weight_quantizer is None and torch.allclose(q(x), before)


def test_static_activation_quantizer_calibrates_then_quantizes() -> None:
    aq = ActQuantizer(QuantSpec(NumberFormat("int8"), "tensor"))
    x = torch.randn(10, 32)
    with pytest.raises(RuntimeError, match="calibration"):
        aq(x)
    aq.observe()
    assert torch.equal(aq(x), x)  # passes through while observing
    aq.freeze()
    y = aq(x)
    assert not torch.equal(y, x) and (y - x).abs().max() <= (x.max() - x.min()) / 255
    assert "scale" in dict(aq.named_buffers())


def test_set_submodule_through_module_lists() -> None:
    model = ToyModel(depth=2)
    new = nn.Identity()
    old = set_submodule(model.module, "blocks.1.fc1", new)
    assert isinstance(old, nn.Linear) and model.module.blocks[1].fc1 is new


def test_quant_layers_swap_keeps_bf16() -> None:
    lin = nn.Linear(32, 8).to(torch.bfloat16)
    q = QuantLinear.from_linear(lin, weight_spec=INT4, act_quantizer=ActQuantizer(INT8_TOKEN))
    assert q(torch.randn(2, 32, dtype=torch.bfloat16)).dtype == torch.bfloat16


# --------------------------------------------------------------------------- capture


def test_hessians_are_streamed_and_shared_between_qkv() -> None:
    model = ToyModel(depth=1, dim=32)
    layers = model.quant_layers()
    calib = model.calibration_batches(3, torch.Generator().manual_seed(0))
    hs = collect_hessians(model, layers, calib)
    blk = "blocks.0"
    assert hs[f"{blk}.q"] is hs[f"{blk}.k"] is hs[f"{blk}.v"]
    assert hs[f"{blk}.fc1"] is not hs[f"{blk}.q"]
    # reference: explicit activations of fc2
    rows = []
    h = model.module.blocks[0].fc2.register_forward_pre_hook(lambda m, a: rows.append(a[0].reshape(-1, a[0].shape[-1])))
    with torch.no_grad():
        for b in calib:
            model.forward_batch(b)
    h.remove()
    x = torch.cat(rows)
    assert torch.allclose(hs[f"{blk}.fc2"], 2 * x.t() @ x / x.shape[0], rtol=1e-4, atol=1e-5)


def test_trace_input_groups_finds_shared_inputs_and_norms() -> None:
    model = ToyModel(depth=2, dim=32)
    groups = trace_input_groups(model, model.quant_layers(), model.calibration_batches(1, torch.Generator())[0])
    by_first = {g.members[0]: g for g in groups}
    assert by_first["blocks.0.q"].members == ["blocks.0.q", "blocks.0.k", "blocks.0.v"]
    assert by_first["blocks.0.q"].producer == "blocks.0.norm1"
    assert by_first["blocks.1.fc1"].producer == "blocks.1.norm2"
    assert by_first["blocks.0.proj"].producer is None and by_first["blocks.0.fc2"].producer is None
    assert sorted(m for g in groups for m in g.members) == sorted(model.quant_layers())


def test_input_channel_absmax() -> None:
    model = ToyModel(depth=1, dim=32, outlier_channels=2)
    amax = input_channel_absmax(model, model.quant_layers(), model.calibration_batches(2, torch.Generator()))
    a = amax["blocks.0.q"]
    assert a.shape == (32,) and (a.topk(2).values > 5 * a.median()).all()
