"""PTQ4ARVG parts against hand-computed cases, and the FP-exactness of shift + scaling on tiny families."""

import copy
import functools

import pytest
import torch

from bitscale.harness.plugin_loader import load_plugins
from bitscale.plugins.quantizers.ptq4arvg import PTQ4ARVG, shift_and_scale
from bitscale.plugins.quantizers.ptq4arvg.dgc import (
    dgc_select,
    labels_of,
    mahalanobis,
    merge_samples,
    split_batches,
    with_labels,
)
from bitscale.plugins.quantizers.ptq4arvg.gps import (
    ChannelStats,
    collect_channel_stats,
    gps_factors,
    smoothquant_factors,
)
from bitscale.plugins.quantizers.ptq4arvg.stwq import TokenGroupActQuantizer, raster_groups, var_groups
from bitscale.precision import NumberFormat, Precision
from bitscale.quant.formats import QuantSpec, fake_quant_weight
from bitscale.testing.toy import LinearModel, TokenGroupLinearModel, ToyModel

PLUGINS = load_plugins(entrypoints=False)
TINY = sorted(e.name for e in PLUGINS.models if e.obj.trainable)


def test_gps_factors_on_a_three_channel_example_by_hand():
    # channel ranges 2, 8, 4 -> anchor a = 1; weight ranges per input channel 1, 4, 1 -> s* = sqrt(8)/sqrt(4)
    st = ChannelStats(
        xmin=torch.tensor([-1.0, -4.0, -2.0]),
        xmax=torch.tensor([1.0, 4.0, 2.0]),
        sum_x2=torch.tensor([4.0, 9.0, 16.0]),
        sum_dx2=torch.tensor([1.0, 2.0, 0.0]),
    )
    w = torch.tensor([[0.5, 2.0, 0.5], [-0.5, -2.0, -0.5], [0.3, 1.0, 0.2]])
    spec = QuantSpec("int3", "channel")
    qw = fake_quant_weight(w, spec)
    dw2, qw2 = (w - qw).pow(2).sum(0), qw.pow(2).sum(0)
    s_star = (8.0**0.5) / (4.0**0.5)
    s = gps_factors(st, [w], spec)
    assert s[1] == pytest.approx(s_star)  # the anchor keeps s*
    assert s[0] == pytest.approx(s_star * float(4.0 * dw2[0] / (1.0 * qw2[0])) ** 0.25)
    assert s[2] == 1.0  # zero denominator (no activation error) -> 1
    assert float(dw2[0]) > 0  # the example exercises the formula, not the fallback


def test_gps_factors_around_the_smoothquant_point_by_hand():
    # pre-scaled by t (the official order: SmoothQuant first, GPS on X / t and W t, s = t * g).
    # scaled ranges 2/1, 8/4, 4/1 = 2, 2, 4 -> anchor a = 2 (not the raw widest channel 1)
    t = torch.tensor([1.0, 4.0, 1.0])
    st = ChannelStats(
        xmin=torch.tensor([-1.0, -4.0, -2.0]),
        xmax=torch.tensor([1.0, 4.0, 2.0]),
        sum_x2=torch.tensor([4.0, 9.0, 16.0]),
        sum_dx2=torch.tensor([1.0, 2.0, 3.0]),
        init=t,
    )
    w = torch.tensor([[0.5, 0.1, -0.5], [-0.5, -0.05, 0.25], [0.3, 0.2, 0.2]])
    spec = QuantSpec("int3", "channel")
    wt = w * t
    qw = fake_quant_weight(wt, spec)
    dw2, qw2 = (wt - qw).pow(2).sum(0), qw.pow(2).sum(0)
    g_star = (4.0**0.5) / (0.25 - (-0.5)) ** 0.5  # range of (W t)[:, 2] = 0.25 - (-0.5)
    s = gps_factors(st, [w], spec)
    assert s[2] == pytest.approx(t[2] * g_star)  # the anchor keeps g*
    for i in (0, 1):
        assert s[i] == pytest.approx(
            float(t[i]) * g_star * float(st.sum_x2[i] * dw2[i] / (st.sum_dx2[i] * qw2[i])) ** 0.25
        )
    assert float(dw2[0]) > 0 and float(dw2[1]) > 0  # the example exercises the formula, not the fallback


def test_smoothquant_init_uses_the_raw_abs_max():
    st = ChannelStats(xmin=torch.tensor([-1.0, 2.0]), xmax=torch.tensor([3.0, 8.0]))
    w = torch.tensor([[4.0, -1.0], [1.0, 0.25]])
    s = smoothquant_factors(st, [w])
    assert s.tolist() == pytest.approx([(3.0 / 4.0) ** 0.5, (8.0 / 1.0) ** 0.5])  # max|X|, not the half-range


def test_gps_statistics_are_taken_around_the_smoothquant_point():
    """Regression: around the raw layer, an outlier channel sets a grid that rounds every ordinary
    channel to 0 (dX = X), so GPS gave all of them one factor whatever their magnitudes."""
    model = LinearModel(4, 8, seed=0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 64, 4, generator=g) * torch.tensor([30.0, 1.0, 2.0, 4.0])
    x[:, 0] = 1e4  # a sink token, left out by skip_tokens
    cal = list(x.unsqueeze(1))
    with torch.no_grad():
        model.linear.weight.copy_(torch.ones(8, 4) + 0.1 * torch.randn(8, 4, generator=g))
    w = model.linear.weight
    aspec, wspec = QuantSpec("int4", "token"), QuantSpec("int4", "channel")
    st = collect_channel_stats(
        model, {"0": model.linear}, cal, aspec, init=lambda _n, s: smoothquant_factors(s, [w]), skip_tokens=1
    )["0"]
    rows = x[:, 1:].reshape(-1, 4)
    assert torch.allclose(st.xmax, rows.amax(0)) and torch.allclose(st.xmin, rows.amin(0))  # sink left out
    assert torch.allclose(st.init, smoothquant_factors(st, [w]))
    assert torch.allclose(st.sum_x2, ((rows - st.shift) / st.init).pow(2).sum(0), rtol=1e-4)
    # around the raw layer the 1x channel has dX = X exactly (ratio 1); here they keep real resolution
    assert bool((st.sum_dx2[1:] / st.sum_x2[1:] < 0.5).all()), st.sum_dx2 / st.sum_x2
    assert st.anchor == 0
    w0 = w[:, 0] * st.init[0]  # the anchor keeps t_a * g* with g* from the pre-scaled ranges
    g_star = (st.scaled_range[0] / (w0.max() - w0.min())).sqrt()
    assert torch.allclose(gps_factors(st, [w], wspec)[0], st.init[0] * g_star)


def test_stwq_picks_the_scale_of_the_tokens_group():
    q = TokenGroupActQuantizer(QuantSpec("int8", "token"), var_groups((1, 2, 3)))  # groups 1, 4, 9 tokens
    x = torch.ones(2, 14, 4)
    x[:, 0] *= 100.0  # the sink token
    x[:, 1:5] *= 10.0
    q.observe()
    q(x)
    q.freeze()
    scales = q.scale.tolist()
    assert scales == pytest.approx([100 / 255, 10 / 255, 1 / 255])  # asym int8, zero in range: max / 255
    # KV-cached generation: calls of 1, 4, 9 tokens pick level 0, 1, 2; then the counter wraps
    for n, level in ((1, 0), (4, 1), (9, 2), (1, 0)):
        y = torch.full((2, n, 4), 0.3 * [100.0, 10.0, 1.0][level])
        step = [100 / 255, 10 / 255, 1 / 255][level]
        assert torch.allclose(q(y), torch.round(y / step) * step)
    assert raster_groups(16) == [(0, 1), (1, 2), (2, 16)]


def test_dgc_picks_the_known_outliers_of_a_synthetic_pool():
    g = torch.Generator().manual_seed(0)
    cond = torch.randn(40, 3, generator=g)
    cond[[5, 17]] += torch.tensor([9.0, -9.0, 9.0])  # two outliers in the conditional set
    uncond = torch.randn(40, 3, generator=g)
    uncond[31] += torch.tensor([0.0, 12.0, 0.0])  # and one in the unconditional set
    picked = dgc_select({"cond": cond, "uncond": uncond}, 3)
    assert sorted(picked) == [("cond", 5), ("cond", 17), ("uncond", 31)]
    d = mahalanobis(torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]]), shrinkage=0.0)
    assert torch.allclose(d, torch.full((4,), 1.5**0.5))  # mean (1,1), cov diag(4/3): d^2 = 2 * 3/4


def test_batch_plumbing_roundtrip_and_null_class():
    model = PLUGINS.models.get("llamagen-tiny").build(
        "d3w64", PLUGINS.models.get("llamagen-tiny").Options(), torch.device("cpu")
    )
    batches = model.calibration_batches(2, torch.Generator().manual_seed(0))
    samples = split_batches(batches)
    again = merge_samples(samples, 32)
    assert all(torch.equal(a[k], b[k]) for a, b in zip(again, batches) for k in a)
    assert torch.equal(
        labels_of(with_labels(batches[0], torch.zeros(32, dtype=torch.long))), torch.zeros(32, dtype=torch.long)
    )


@functools.cache
def _pristine(family):
    fam = PLUGINS.models.get(family)
    return fam.build(fam.sizes[0], fam.Options(), torch.device("cpu"))


@pytest.mark.parametrize("gps", [True, False])
@pytest.mark.parametrize("family", TINY + ["toy"])
def test_shift_and_scaling_keep_the_fp_output(family, gps):
    model = ToyModel() if family == "toy" else copy.deepcopy(_pristine(family))
    batches = model.calibration_batches(2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model.forward_batch(batches[1]).float()
    _, _, folded, change = shift_and_scale(
        model, batches, QuantSpec("int4", "channel"), QuantSpec("int4", "token"), gps=gps
    )
    with torch.no_grad():
        out = model.forward_batch(batches[1]).float()
    assert float((out - ref).norm() / ref.norm()) < 1e-4
    if family == "var-tiny" or family == "dit-tiny":
        assert folded["modulation"] > 0  # qkv / fc1 inputs folded into the AdaLN projection
    if family in ("llamagen-tiny", "toy"):
        assert folded["norm"] > 0


def test_ptq4arvg_w4a4_runs_with_every_part_switched(tmp_path):
    model = copy.deepcopy(_pristine("var-tiny"))
    batches = model.calibration_batches(1, torch.Generator().manual_seed(0))
    for opts in ({}, {"gps": False}, {"stwq": False}, {"dgc": False}):
        m = copy.deepcopy(model)
        rep = PTQ4ARVG(PTQ4ARVG.Options(**opts)).quantize(
            m, Precision.parse("W4A4"), batches, generator=torch.Generator().manual_seed(0)
        )
        assert rep.effective_weight_bits > 4
        if opts.get("stwq", True):
            assert any(isinstance(q.act_quantizer, TokenGroupActQuantizer) for q in m.quant_layers().values())
    assert PTQ4ARVG().unsupported_reason(Precision.parse("W4A16"))
    assert PTQ4ARVG().unsupported_reason(Precision.parse("W8A8:fp"))
    assert NumberFormat("int4").kind == "int"


@pytest.mark.parametrize("family", ["var-tiny", "llamagen-tiny"])
def test_stwq_position_counter_follows_sampling(family):
    """A KV-cached generation feeds every position once: the counters end where they began."""
    model = copy.deepcopy(_pristine(family))
    batches = model.calibration_batches(1, torch.Generator().manual_seed(0))
    PTQ4ARVG(PTQ4ARVG.Options(dgc=False)).quantize(
        model, Precision.parse("W8A8"), batches, generator=torch.Generator().manual_seed(0)
    )
    stwq = [
        q.act_quantizer for q in model.quant_layers().values() if isinstance(q.act_quantizer, TokenGroupActQuantizer)
    ]
    assert stwq
    imgs = model.sample(torch.arange(2), torch.Generator().manual_seed(0))
    assert imgs.dtype == torch.uint8
    assert all(q.position == 0 for q in stwq), [q.position for q in stwq]


def test_token_group_layer_gets_var_groups():
    """The benchmarks' VAR-structured synthetic layer: ptq4arvg picks VAR's token groups on it."""
    model = TokenGroupLinearModel(64, 32, patch_nums=(1, 2, 3), outlier_channels=1, seed=0)
    x = model.inputs(2, torch.Generator().manual_seed(0))
    assert x.shape == (2, 14, 64)
    assert model.token_gain.tolist() == pytest.approx([20.0] + [4.0] * 4 + [0.5] * 9)
    PTQ4ARVG(PTQ4ARVG.Options(dgc=False)).quantize(
        model, Precision.parse("W4A4"), model.calibration_batches(2, torch.Generator().manual_seed(0))
    )
    q = model.linear.act_quantizer
    assert isinstance(q, TokenGroupActQuantizer) and q.groups == var_groups((1, 2, 3))
