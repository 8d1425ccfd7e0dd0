"""Built-in quantizers on toy models: contract, registration, and the error figures they must reach."""

from __future__ import annotations

import importlib

import pytest
import torch
from pydantic import ValidationError

from bitscale.harness.contracts import GenerativeModel, Quantizer
from bitscale.plugins.quantizers.gptvq.kernel import gptvq_quantize
from bitscale.plugins.quantizers.smoothquant import smooth_model
from bitscale.precision import Precision
from bitscale.quant.capture import collect_hessians
from bitscale.quant.formats import QuantSpec, fake_quant_weight
from bitscale.quant.gptq import gptq_quantize
from bitscale.quant.linear import QuantLinear
from bitscale.testing.gptq_reference import gptq_obs
from bitscale.testing.toy import LinearModel, ToyModel

PLUGIN_MODULES = [
    "bitscale.plugins.quantizers.rtn",
    "bitscale.plugins.quantizers.gptq",
    "bitscale.plugins.quantizers.smoothquant",
    "bitscale.plugins.quantizers.gptvq",
    "bitscale.plugins.quantizers.omniquant",
]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: intra-op threads only contend on a shared 2-core machine (10x slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _registered(module: str) -> list[type[Quantizer]]:
    got: list[type[Quantizer]] = []
    importlib.import_module(module).register_quantizers(register=got.append)
    return got


ALL = {cls.name: cls for m in PLUGIN_MODULES for cls in _registered(m)}
# Fewer optimisation iterations where a test only checks that a cell runs and reports.
FAST_OPTIONS = {"omniquant": {"steps": 5}, "gptvq": {"kmeans_iters": 2}}


def _toy(**kw) -> ToyModel:
    return ToyModel(depth=2, dim=32, **kw)


def _calib(model: ToyModel, n: int = 4) -> list[torch.Tensor]:
    return model.calibration_batches(n, torch.Generator().manual_seed(1))


def _rel_err(model: ToyModel, ref: ToyModel, batches: list[torch.Tensor]) -> float:
    with torch.no_grad():
        num = sum((model.forward_batch(b) - ref.forward_batch(b)).pow(2).sum() for b in batches)
        den = sum(ref.forward_batch(b).pow(2).sum() for b in batches)
    return float(num / den)


# --------------------------------------------------------------------------- contract


def test_plugins_register_quantizer_classes() -> None:
    assert "rtn" in ALL
    for name, cls in ALL.items():
        assert issubclass(cls, Quantizer) and cls.name == name and cls.description


@pytest.mark.parametrize("name", sorted(ALL))
def test_options_have_defaults_and_reject_typos(name: str) -> None:
    cls = ALL[name]
    cls(cls.Options())
    with pytest.raises(ValidationError):
        cls.Options(gruop_size=128)


@pytest.mark.parametrize("name", sorted(ALL))
@pytest.mark.parametrize("precision", ["W4A16", "W8A8", "W4A8:fp", "w=fp4_e2m1,a=fp8_e4m3", "W3A16", "W8A16:fp"])
def test_every_supported_cell_runs_and_reports(name: str, precision: str) -> None:
    cls, p = ALL[name], Precision.parse(precision)
    q = cls(cls.Options(**FAST_OPTIONS.get(name, {})))
    if q.unsupported_reason(p) is not None:
        pytest.skip(q.unsupported_reason(p))
    model, ref = _toy(), _toy()
    report = q.quantize(model, p, _calib(model, 2), generator=torch.Generator().manual_seed(0))
    layers = model.quant_layers()
    assert all(isinstance(m, QuantLinear) for m in layers.values()) and report.layers == len(layers)
    assert isinstance(model.module.head, torch.nn.Linear) and not isinstance(model.module.head, QuantLinear)
    # scales/zero-points cost < 1.5 bits here; VQ codebooks on 1k-weight toy layers can cost more
    assert p.w_bits <= report.effective_weight_bits < p.w_bits + (4.5 if name == "gptvq" else 1.5)
    err = _rel_err(model, ref, _calib(model, 2))
    assert 0 < err < 0.5, err


def test_w16a16_is_never_scheduled() -> None:
    for cls in ALL.values():
        assert "full-precision" in cls().unsupported_reason(Precision.parse("W16A16"))


# --------------------------------------------------------------------------- RTN


def test_rtn_supports_int_and_fp_weight_and_activation() -> None:
    rtn = ALL["rtn"]()
    for p in ["W4A16", "W8A8", "W4A8:fp", "w=int4,a=fp8_e4m3", "W16A8"]:
        assert rtn.unsupported_reason(Precision.parse(p)) is None


def test_rtn_effective_bits_count_scales_and_zero_points() -> None:
    model = _toy()
    rep = ALL["rtn"]().quantize(model, Precision.parse("W4A16"), [])
    # dims 32 (q,k,v,proj,fc1) and 128 (fc2) in-features, per-channel asym: 20 bits per row
    rows_bits = sum(m.out_features * 20 for m in model.quant_layers().values())
    numel = sum(m.weight.numel() for m in model.quant_layers().values())
    assert rep.effective_weight_bits == pytest.approx(4 + rows_bits / numel)
    assert rep.extra["model_effective_bits"] > rep.effective_weight_bits  # head/embeddings at 16


def test_weight_symmetric_option_picks_the_grid_and_activations_stay_restricted() -> None:
    """``weight_symmetric: true`` is the full 2^b-code grid, ``restricted`` the ±(2^(b-1)-1) one;
    neither stores a zero-point. Symmetric activations keep the restricted grid."""
    steps = {}
    for sym, label, levels in ((True, "int3:channel:sym", 8), ("restricted", "int3:channel:sym-restricted", 7)):
        model = _toy()
        opts = ALL["rtn"].Options(weight_symmetric=sym, act_symmetric=True)
        rep = ALL["rtn"](opts).quantize(model, Precision.parse("W3A8"), [])
        layers = model.quant_layers().values()
        assert {m.weight_label for m in layers} == {label}
        assert max(len(torch.unique(m.weight[r])) for m in layers for r in range(m.out_features)) <= levels
        # grid step of a row: max|w| / 3.5 on the full grid, / 3 on the restricted one
        q = next(iter(layers)).weight[0].detach()
        steps[sym] = float(min(torch.diff(torch.unique(q))))
        rows_bits = sum(m.out_features * 16 for m in layers)  # fp16 scale, no zero-point
        numel = sum(m.weight.numel() for m in layers)
        assert rep.effective_weight_bits == pytest.approx(3 + rows_bits / numel)
        assert all(m.act_quantizer.spec.symmetric and m.act_quantizer.spec.restricted for m in layers)
    ref = next(iter(_toy().quant_layers().values())).weight[0].detach()
    assert steps[True] == pytest.approx(float(ref.abs().max()) / 3.5, rel=1e-5)
    assert steps["restricted"] == pytest.approx(float(ref.abs().max()) / 3, rel=1e-5)
    # configurations that never name the grid keep their option dump (and so their cell hashes)
    assert ALL["rtn"].Options().model_dump(mode="json") == {
        "act_granularity": "token",
        "act_symmetric": False,
        "group_size": None,
        "weight_symmetric": False,
    }
    with pytest.raises(ValidationError, match="expected true .*, false .* or 'restricted'"):
        ALL["rtn"].Options(weight_symmetric="full")


def test_rtn_groups_lower_the_error() -> None:
    ref = _toy()
    errs = {}
    for gs in (None, 8):
        model = _toy()
        ALL["rtn"](ALL["rtn"].Options(group_size=gs)).quantize(model, Precision.parse("W3A16"), [])
        errs[gs] = _rel_err(model, ref, _calib(model, 2))
    assert errs[8] < errs[None]


def test_rtn_static_activations_are_calibrated() -> None:
    model, ref = _toy(), _toy()
    opts = ALL["rtn"].Options(act_granularity="tensor")
    ALL["rtn"](opts).quantize(model, Precision.parse("W8A8"), _calib(model))
    assert all(m.act_quantizer.scale is not None for m in model.quant_layers().values())
    assert _rel_err(model, ref, _calib(model, 2)) < 0.05


def test_rtn_w8a8_is_close_and_w2_is_far() -> None:
    ref = _toy()
    m8, m2 = _toy(), _toy()
    ALL["rtn"]().quantize(m8, Precision.parse("W8A8"), [])
    ALL["rtn"]().quantize(m2, Precision.parse("W2A16"), [])
    batches = _calib(ref, 2)
    assert _rel_err(m8, ref, batches) < 1e-3 < _rel_err(m2, ref, batches)


# --------------------------------------------------------------------------- GPTQ


@pytest.fixture(scope="module")
def correlated_layer() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(weight, Hessian from 48 calibration sequences, held-out inputs) of a 128x256 layer."""
    m = LinearModel(256, 128, seq=32)
    h = collect_hessians(m, m.quant_layers(), m.calibration_batches(48, torch.Generator().manual_seed(1)))["0"]
    x = m.inputs(16, torch.Generator().manual_seed(2)).reshape(-1, 256)
    return m.linear.weight.detach(), h, x


def _out_err(w: torch.Tensor, wq: torch.Tensor, x: torch.Tensor) -> float:
    return float((x @ (wq - w).T).pow(2).sum() / (x @ w.T).pow(2).sum())


@pytest.mark.parametrize("bits", [3, 4])
@pytest.mark.parametrize("group_size", [None, 128])
@pytest.mark.parametrize("symmetric", [False, True])
def test_gptq_matches_reference_and_beats_rtn(
    correlated_layer, bits: int, group_size: int | None, symmetric: bool
) -> None:
    w, h, x = correlated_layer
    spec = QuantSpec(f"int{bits}", "group" if group_size else "channel", group_size, symmetric)
    ours = _out_err(w, gptq_quantize(w, h, spec).weight, x)
    ref = _out_err(w, gptq_obs(w, h, spec), x)
    rtn = _out_err(w, fake_quant_weight(w, spec), x)
    assert abs(ours - ref) <= 0.01 * ref, (ours, ref)
    assert ours < 0.5 * rtn, (ours, rtn)


def test_gptq_act_order_and_fp_formats(correlated_layer) -> None:
    w, h, x = correlated_layer
    spec = QuantSpec("int3", "group", 64)
    plain = _out_err(w, gptq_quantize(w, h, spec).weight, x)
    ordered = gptq_quantize(w, h, spec, act_order=True).weight
    assert _out_err(w, ordered, x) < 1.1 * plain
    # act-order keeps contiguous static groups: every group of every row is on its own grid
    assert all(len(torch.unique(ordered[r, g : g + 64])) <= 8 for r in range(4) for g in (0, 64, 128, 192))
    fp = QuantSpec("fp4_e2m1", "channel")
    assert _out_err(w, gptq_quantize(w, h, fp).weight, x) < 0.7 * _out_err(w, fake_quant_weight(w, fp), x)


def test_gptq_handles_dead_inputs_and_singular_hessians() -> None:
    w = torch.randn(8, 16)
    x = torch.randn(4, 16)
    x[:, 3] = 0  # a dead input channel and a rank-deficient Hessian
    res = gptq_quantize(w, 2 * x.T @ x / 4, QuantSpec("int4", "channel"))
    assert torch.isfinite(res.weight).all() and not res.fell_back_to_rtn
    assert (res.weight[:, 3] == 0).all()


def test_gptq_chunks_hessians_within_a_memory_budget() -> None:
    model, ref = _toy(), _toy()
    opts = ALL["gptq"].Options(hessian_memory_fraction=0.01)
    rep = ALL["gptq"](opts).quantize(model, Precision.parse("W4A16"), _calib(model))
    assert rep.extra["calibration_passes"] > 1
    one = _toy()
    rep1 = ALL["gptq"](ALL["gptq"].Options(hessian_memory_fraction=10)).quantize(
        one, Precision.parse("W4A16"), _calib(one)
    )
    assert rep1.extra["calibration_passes"] == 1
    batches = _calib(ref, 2)
    assert _rel_err(model, ref, batches) < 2 * _rel_err(one, ref, batches) + 1e-4


def test_gptq_beats_rtn_on_a_transformer() -> None:
    ref, g, r = _toy(), _toy(), _toy()
    p = Precision.parse("W3A16")
    ALL["gptq"]().quantize(g, p, _calib(g, 8))
    ALL["rtn"]().quantize(r, p, [])
    batches = _calib(ref, 2)
    assert _rel_err(g, ref, batches) < _rel_err(r, ref, batches)


# --------------------------------------------------------------------------- SmoothQuant


def _lin_err(m: LinearModel, ref: LinearModel) -> float:
    x = ref.inputs(8, torch.Generator().manual_seed(5))
    with torch.no_grad():
        return float((m.forward_batch(x) - ref.forward_batch(x)).pow(2).sum() / ref.forward_batch(x).pow(2).sum())


def test_smoothing_leaves_the_full_precision_function_unchanged() -> None:
    model, ref = _toy(outlier_channels=3), _toy(outlier_channels=3)
    done = smooth_model(model, _calib(model), alpha=0.5)
    assert done["folded"] == 4 and done["groups"] == 8  # q/k/v and fc1 into norms; proj, fc2 in-layer
    assert _rel_err(model, ref, _calib(model, 2)) < 1e-10
    lin, lref = LinearModel(64, 32, outlier_channels=4), LinearModel(64, 32, outlier_channels=4)
    smooth_model(lin, lin.calibration_batches(4, torch.Generator()), alpha=0.5)
    assert lin.linear.smooth is not None and _lin_err(lin, lref) < 1e-10


class _SharedNormOutput(GenerativeModel):
    """``y = fc(norm(x)) + norm(x)``: the norm output also feeds the residual, so no folding."""

    style = "diffusion"

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.module = torch.nn.ModuleDict({"norm": torch.nn.LayerNorm(16), "fc": torch.nn.Linear(16, 16)})
        with torch.no_grad():
            self.module["norm"].weight[:2] = 30.0
        self.dataset, self.num_classes, self.sampler = "toy", 1, {}

    def calibration_batches(self, n, generator):
        return [torch.randn(4, 16, generator=generator) for _ in range(n)]

    def forward_batch(self, batch):
        h = self.module["norm"](batch)
        return self.module["fc"](h) + h

    def sample(self, labels, generator):
        return torch.zeros(len(labels), 3, 4, 4, dtype=torch.uint8)


def test_smoothing_undoes_a_norm_fold_that_would_change_the_function() -> None:
    model, ref = _SharedNormOutput(), _SharedNormOutput()
    calib = model.calibration_batches(2, torch.Generator())
    done = smooth_model(model, calib, alpha=0.5)
    assert done["folded"] == 0 and done["fp_change"] < 1e-6
    assert torch.allclose(model.module["norm"].weight, ref.module["norm"].weight)
    assert torch.allclose(model.forward_batch(calib[0]), ref.forward_batch(calib[0]), atol=1e-5)


@pytest.mark.parametrize("act", ["token", "tensor"])
def test_smoothquant_beats_rtn_at_w8a8_with_outlier_channels(act: str) -> None:
    p = Precision.parse("W8A8")
    ref = LinearModel(128, 64, outlier_channels=4, outlier_scale=50.0)
    errs = {}
    for name in ("rtn", "smoothquant"):
        m = LinearModel(128, 64, outlier_channels=4, outlier_scale=50.0)
        cls = ALL[name]
        cls(cls.Options(act_granularity=act)).quantize(m, p, m.calibration_batches(8, torch.Generator().manual_seed(1)))
        errs[name] = _lin_err(m, ref)
    assert errs["smoothquant"] < 0.5 * errs["rtn"], errs


def test_smoothquant_beats_rtn_on_a_transformer_with_outliers() -> None:
    p = Precision.parse("W8A8")
    ref, sq, r = (_toy(outlier_channels=2, outlier_scale=40.0) for _ in range(3))
    ALL["smoothquant"]().quantize(sq, p, _calib(sq))
    ALL["rtn"]().quantize(r, p, [])
    batches = _calib(ref, 2)
    assert _rel_err(sq, ref, batches) < _rel_err(r, ref, batches)


def test_smoothquant_needs_quantized_activations() -> None:
    assert "activations" in ALL["smoothquant"]().unsupported_reason(Precision.parse("W4A16"))


# --------------------------------------------------------------------------- GPTVQ and OmniQuant


def _block() -> ToyModel:
    """One small transformer block with mildly outlying channels."""
    return ToyModel(depth=1, dim=64, outlier_channels=2, outlier_scale=10.0)


def _block_err(name: str, precision: str, **options) -> tuple[float, float]:
    ref, model = _block(), _block()
    cls = ALL[name]
    rep = cls(cls.Options(**options)).quantize(model, Precision.parse(precision), _calib(model, 8))
    return _rel_err(
        model, ref, model.calibration_batches(4, torch.Generator().manual_seed(9))
    ), rep.effective_weight_bits


def test_gptvq_and_omniquant_beat_rtn_at_w3a16_on_a_transformer_block() -> None:
    rtn, rtn_bits = _block_err("rtn", "W3A16")
    vq, vq_bits = _block_err("gptvq", "W3A16")
    omni, omni_bits = _block_err("omniquant", "W3A16", steps=100)
    assert vq < 0.5 * rtn and omni < 0.9 * rtn, (rtn, vq, omni)
    assert omni_bits == rtn_bits and 3 < vq_bits < 3.5  # codebooks counted


def test_omniquant_let_beats_rtn_at_w4a4() -> None:
    rtn, _ = _block_err("rtn", "W4A4")
    omni, bits = _block_err("omniquant", "W4A4", steps=50)
    assert omni < 0.7 * rtn, (rtn, omni)


def test_gptvq_counts_codebooks_and_uses_them(correlated_layer) -> None:
    w, h, x = correlated_layer
    res = gptvq_quantize(w, h, bits=3, dim=2, generator=torch.Generator().manual_seed(0))
    assert res.codebook_size == 64 and res.num_codebooks == 2  # 2 column blocks x 1 row group
    assert res.storage_bits == w.numel() // 2 * 6 + 2 * 64 * 2 * 16
    # every row-pair vector of a block is one of that block's 64 (fp16) centroids
    vecs = res.weight[:, :128].reshape(-1, 2)
    assert len(torch.unique(vecs, dim=0)) <= 64 and torch.equal(vecs, vecs.half().float())
    rtn = _out_err(w, fake_quant_weight(w, QuantSpec("int3", "channel")), x)
    assert _out_err(w, res.weight, x) < 0.5 * rtn


def test_gptvq_falls_back_to_scalar_codebooks_on_small_layers() -> None:
    model = _toy()
    rep = ALL["gptvq"]().quantize(model, Precision.parse("W4A16"), _calib(model, 2))
    assert "1-D" in rep.notes and rep.effective_weight_bits < 4.5
