"""QAT-distill: beats RTN, is deterministic, bakes its weights, caches the teacher, works on every style."""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import pytest
import torch
from torch import nn

from bitscale.harness.contracts import GenerativeModel
from bitscale.harness.plugin_loader import get_plugins
from bitscale.plugins.losses.kl import ForwardKL
from bitscale.plugins.losses.mse import MSE
from bitscale.plugins.losses.topkld import TopKLD
from bitscale.plugins.quantizers.qat import QAT, QATOptions
from bitscale.plugins.quantizers.qat.engine import build_student, lr_factor, trainable_groups
from bitscale.plugins.quantizers.qat.teacher import TeacherOutputs
from bitscale.plugins.quantizers.rtn import RTN
from bitscale.precision import Precision
from bitscale.quant.linear import QuantLinear
from bitscale.testing.contract_checks import check_quantizer
from bitscale.testing.toy import ToyModel


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny matmuls gain nothing from threads, and on a shared CPU the thread pool's spinning
    # makes them many times slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class FastQATOptions(QATOptions):
    steps: int = 20


class FastQAT(QAT):
    """QAT with a short budget for the (many-precision) contract check."""

    Options: ClassVar = FastQATOptions


def relative_error(model: GenerativeModel, reference: list[torch.Tensor], batches: list) -> float:
    with torch.no_grad():
        errs = [(model.forward_batch(b) - r).pow(2).mean() / r.pow(2).mean() for b, r in zip(batches, reference)]
    return float(torch.stack(errs).mean())


def quantized(model, quantizer, precision="W3A16", loss=None, seed=0, batches=None):
    m = copy.deepcopy(model)
    batches = batches if batches is not None else m.calibration_batches(8, torch.Generator().manual_seed(seed))
    report = quantizer.quantize(
        m, Precision.parse(precision), batches, loss=loss, generator=torch.Generator().manual_seed(seed)
    )
    return m, report


@pytest.fixture
def held_out():
    model = ToyModel(depth=2)
    batches = model.calibration_batches(4, torch.Generator().manual_seed(123))
    with torch.no_grad():
        reference = [model.forward_batch(b) for b in batches]
    return model, batches, reference


# --------------------------------------------------------------------------- quality


@pytest.mark.parametrize("loss_cls", [ForwardKL, TopKLD, MSE], ids=lambda c: c.name)
def test_qat_beats_rtn_at_w3a16_on_held_out_batches(held_out, loss_cls):
    model, batches, reference = held_out
    rtn, _ = quantized(model, RTN())
    qat, report = quantized(model, QAT(), loss=loss_cls())
    assert report.extra["loss_last"] < report.extra["loss_first"]
    assert relative_error(qat, reference, batches) < 0.5 * relative_error(rtn, reference, batches)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["reverse-kl", "js"])
def test_qat_beats_rtn_with_the_other_losses(held_out, name):
    model, batches, reference = held_out
    rtn, _ = quantized(model, RTN())
    qat, _ = quantized(model, QAT(), loss=get_plugins().losses.get(name)())
    assert relative_error(qat, reference, batches) < 0.5 * relative_error(rtn, reference, batches)


def test_qat_does_not_hurt_where_rtn_is_already_good(held_out):
    # At 8 bits a fixed learning rate that suits 3 bits would jump across grid points every step.
    model, batches, reference = held_out
    rtn, _ = quantized(model, RTN(), "W8A16")
    qat, _ = quantized(model, QAT(), "W8A16", loss=ForwardKL())
    assert relative_error(qat, reference, batches) <= relative_error(rtn, reference, batches)


def test_grid_learning_rate_follows_the_bit_width():
    model = ToyModel(depth=1)
    first_lr = {}
    for prec in ("W3A16", "W8A16"):
        m = copy.deepcopy(model)
        build_student(m, Precision.parse(prec), [], QATOptions())
        first_lr[prec] = trainable_groups(m.module, QATOptions())[0]["lr"]
    assert first_lr["W3A16"] / first_lr["W8A16"] == pytest.approx(255 / 7, rel=1e-6)
    m = copy.deepcopy(model)
    build_student(m, Precision.parse("W3A16"), [], QATOptions())
    groups = trainable_groups(m.module, QATOptions(lr=1e-3, lr_unit="absolute", train="all"))
    assert {g["lr"] for g in groups} == {1e-3}
    assert sum(len(g["params"]) for g in groups) == len(list(m.module.parameters()))


# --------------------------------------------------------------------------- mechanics


def test_same_seed_same_model_and_different_seed_differs():
    model = ToyModel(depth=1)
    opts = QATOptions(steps=15)
    a, _ = quantized(model, QAT(opts), loss=ForwardKL(), seed=0)
    b, _ = quantized(model, QAT(opts), loss=ForwardKL(), seed=0)
    sa, sb = a.module.state_dict(), b.module.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    batches = model.calibration_batches(8, torch.Generator().manual_seed(0))
    c, _ = quantized(model, QAT(opts), loss=ForwardKL(), seed=1, batches=batches)  # same data, other order
    assert any(not torch.equal(sa[k], c.module.state_dict()[k]) for k in sa)


def test_weights_are_baked_onto_the_grid_and_flags_restored():
    model = ToyModel(depth=1)
    model.module.train()
    m, report = quantized(model, QAT(QATOptions(steps=10, learnable_scales=True)), loss=ForwardKL())
    layers = [q for q in m.module.modules() if isinstance(q, QuantLinear)]
    assert len(layers) == len(model.quant_layers()) == report.layers
    for q in layers:
        assert q.weight_quantizer is None  # inference is a plain matmul
        for row in q.weight:
            assert row.unique().numel() <= 2**3
    assert m.module.training  # mode restored
    assert all(p.requires_grad for p in m.module.parameters())  # flags restored (all True before)
    assert all(p.grad is None for p in m.module.parameters())
    assert 3 < report.effective_weight_bits < 3.5
    assert "K=" in report.notes or "loss=forward-kl" in report.notes


def test_train_all_parameters_changes_norms_too():
    model = ToyModel(depth=1)
    m, _ = quantized(model, QAT(QATOptions(steps=10, train="all")), loss=ForwardKL())
    assert not torch.equal(m.module.norm.weight, model.module.norm.weight)
    n, _ = quantized(model, QAT(QATOptions(steps=10)), loss=ForwardKL())
    assert torch.equal(n.module.norm.weight, model.module.norm.weight)


@pytest.mark.parametrize("precision", ["W4A8", "W8A8:fp", "W4A16:fp", "w=int4,a=fp8_e4m3"])
def test_weight_activation_and_fp_precisions(precision):
    model = ToyModel(depth=1)
    m, report = quantized(
        model, QAT(QATOptions(steps=5, act_granularity="tensor", learnable_scales=True)), precision, loss=ForwardKL()
    )
    acts = [q.act_quantizer for q in m.module.modules() if isinstance(q, QuantLinear)]
    if Precision.parse(precision).weight_only:
        acts = [a for a in acts if a is not None]
        assert not acts
    assert all(a is not None and a.scale is not None and not a.learnable for a in acts)
    assert all(isinstance(a.scale, torch.Tensor) and not isinstance(a.scale, nn.Parameter) for a in acts)
    x = m.calibration_batches(1, torch.Generator().manual_seed(5))[0]
    with torch.no_grad():
        assert torch.isfinite(m.forward_batch(x)).all()
    assert report.effective_weight_bits >= Precision.parse(precision).w_bits


def test_teacher_cache_is_shared_across_cells_and_budget_fallback_is_identical():
    model = ToyModel(depth=1)
    opts = QATOptions(steps=5)
    TeacherOutputs._shared = None
    _, first = quantized(model, QAT(opts), loss=ForwardKL())
    assert first.extra["teacher_reused"] == 0 and first.extra["teacher_cached_batches"] == 8
    a, second = quantized(model, QAT(opts), loss=ForwardKL())
    assert second.extra["teacher_reused"] == 1
    # No cache at all: a frozen teacher copy computes every step, and the result is the same.
    b, third = quantized(
        model, QAT(QATOptions(steps=5, teacher_cache_mb=0, share_teacher_cache=False)), loss=ForwardKL()
    )
    assert third.extra["teacher_cached_batches"] == 0
    sa, sb = a.module.state_dict(), b.module.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # A different model (other weights) must not reuse the first one's outputs.
    _, other = quantized(ToyModel(depth=1, seed=1), QAT(opts), loss=ForwardKL())
    assert other.extra["teacher_reused"] == 0


def test_topkld_takes_k_from_the_sampler():
    model = ToyModel(depth=1)
    model.sampler = {"top_k": 7}
    loss = TopKLD()
    _, report = quantized(model, QAT(QATOptions(steps=2)), loss=loss)
    assert loss.k == 7 and "K=7" in report.notes


def test_needs_a_loss_that_fits_the_model():
    model = ToyModel(depth=1)
    with pytest.raises(ValueError, match="distillation loss"):
        quantized(model, QAT(QATOptions(steps=1)))
    diffusion = TinyDiffusion()
    with pytest.raises(ValueError, match="language-style"):
        quantized(diffusion, QAT(QATOptions(steps=1)), loss=ForwardKL())


def test_lr_schedule():
    opts = QATOptions(steps=10, warmup_steps=2, min_lr_ratio=0.1)
    factors = [lr_factor(s, opts) for s in range(10)]
    assert factors[0] == 0.5 and factors[1] == 1.0 and factors[2] == 1.0
    assert all(a >= b for a, b in zip(factors[1:], factors[2:]))
    assert factors[-1] > 0.1
    assert lr_factor(10, opts) == pytest.approx(0.1)
    assert lr_factor(5, QATOptions(steps=10, schedule="constant")) == 1.0


# --------------------------------------------------------------------------- other model styles


class TinyDiffusion(GenerativeModel):
    """A diffusion-style contract model: an MLP that predicts the noise of a noised 4x4 image."""

    style: ClassVar = "diffusion"
    unquantized: ClassVar = ("out",)

    def __init__(self, seed: int = 0) -> None:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.module = nn.ModuleDict({"fc1": nn.Linear(17, 64), "fc2": nn.Linear(64, 64), "out": nn.Linear(64, 16)})
        self.dataset, self.num_classes, self.sampler = "digits16", 10, {"steps": 4}

    def calibration_batches(self, n: int, generator: torch.Generator) -> list[Any]:
        out = []
        for _ in range(n):
            x0 = torch.rand(16, 16, generator=generator) * 2 - 1
            noise = torch.randn(16, 16, generator=generator)
            t = torch.rand(16, 1, generator=generator)
            out.append((torch.sqrt(1 - t) * x0 + torch.sqrt(t) * noise, t))
        return out

    def forward_batch(self, batch: Any) -> torch.Tensor:
        x, t = batch
        m = self.module
        h = torch.nn.functional.silu(m["fc1"](torch.cat([x, t], dim=1)))
        return m["out"](torch.nn.functional.silu(m["fc2"](h))).view(-1, 1, 4, 4)

    def sample(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        x = torch.randn(len(labels), 16, generator=generator)
        with torch.no_grad():
            for i in range(4, 0, -1):
                t = torch.full((len(labels), 1), i / 5)
                x = x - 0.2 * self.forward_batch((x, t)).view(len(labels), 16)
        img = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).view(-1, 1, 4, 4)
        return img.expand(-1, 3, -1, -1)


def test_diffusion_model_with_mse_beats_rtn():
    model = TinyDiffusion()
    batches = model.calibration_batches(4, torch.Generator().manual_seed(9))
    with torch.no_grad():
        reference = [model.forward_batch(b) for b in batches]
    rtn, _ = quantized(model, RTN())
    qat, _ = quantized(model, QAT(), loss=MSE())
    assert relative_error(qat, reference, batches) < relative_error(rtn, reference, batches)


@pytest.mark.slow
def test_quantizer_contract():
    check_quantizer(FastQAT, lambda: ToyModel(depth=1))
