"""Reusable contract tests. Subclass in your own test suite and set the class attribute:

    class TestMine(QuantizerContract):   quantizer_cls = MyQuantizer   (one test per precision)
    class TestMine(ModelFamilyContract): family = MyFamily(); size = "small"
    class TestMine(DistillLossContract): loss_cls = MyLoss

bitscale's own suite runs the same checks over every registered plugin (``check_*`` functions).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from bitscale import DistillLoss, GenerativeModel, ModelFamily, Precision, Quantizer, QuantReport

#: The precisions every quantizer's contract tries, where it supports them (``unsupported_reason``
#: is None): integer and fp weight-only settings at 8/4/3 bits, and W8A8/W4A8. A quantizer's
#: declared widths (``weight_bits``, ``activation_bits``) add theirs (``candidate_precisions``).
CANDIDATE_PRECISIONS = ("W8A16", "W4A16", "W3A16", "W8A8", "W4A8", "W8A16:fp", "W4A16:fp", "W8A8:fp")
_FP_WIDTHS = (4, 6, 8)  # the widths with a default fp format (``W{b}A{b}:fp``)


def candidate_precisions(cls: type[Quantizer]) -> list[str]:
    """``CANDIDATE_PRECISIONS`` plus one setting per width ``cls`` declares: ``W{w}A16`` for each
    declared weight width, ``W8A{a}`` for each declared activation width, both as fp where the
    class quantizes to fp and the width has an fp format."""
    labels = list(CANDIDATE_PRECISIONS)
    fp_w, fp_a = "fp" in cls.weight_kinds, "fp" in cls.activation_kinds
    for w in sorted(cls.weight_bits or ()):
        labels.append(f"W{w}A16")
        labels += [f"W{w}A16:fp"] if fp_w and w in _FP_WIDTHS else []
    for a in sorted(cls.activation_bits or ()):
        w = 8 if cls.weight_bits is None or 8 in cls.weight_bits else max(cls.weight_bits)
        labels.append(f"W{w}A{a}")
        labels += [f"W{w}A{a}:fp"] if fp_w and fp_a and w in _FP_WIDTHS and a in _FP_WIDTHS else []
    return list(dict.fromkeys(Precision.parse(label).label for label in labels))


def supported_precisions(cls: type[Quantizer]) -> list[Precision]:
    """The candidate precisions ``cls`` accepts (its default options' ``unsupported_reason`` is None)."""
    q = cls()
    return [p for p in map(Precision.parse, candidate_precisions(cls)) if q.unsupported_reason(p) is None]


def _output_error(model: GenerativeModel, reference: list[torch.Tensor], batches: list) -> float:
    with torch.no_grad():
        errs = [
            (model.forward_batch(b).float() - r).pow(2).mean() / r.pow(2).mean() for b, r in zip(batches, reference)
        ]
    return float(torch.stack(errs).mean())


def _loss_for(cls: type[Quantizer], model: GenerativeModel) -> DistillLoss | None:
    if not cls.trains:
        return None
    from bitscale.harness.plugin_loader import get_plugins

    for entry in get_plugins().losses:
        loss = entry.obj()
        if loss.applies_to(model.style) is None:
            return loss
    raise AssertionError(f"{cls.name} trains but no registered loss applies to a {model.style} model")


def check_precision(
    cls: type[Quantizer], make_model, prec: Precision, repeat: bool = True, options: dict | None = None
) -> float:
    """``cls`` quantizes a fresh ``make_model()`` at ``prec``: a ``QuantReport`` with effective bits at
    least the nominal width, a finite output that differs from full precision, and (``repeat``) the
    same result twice under the same seed. Returns the relative output error."""
    outs = []
    for _ in range(2 if repeat else 1):  # twice: the same seed must give the same model
        model = make_model()
        gen = torch.Generator().manual_seed(0)
        batches = model.calibration_batches(2, gen)
        with torch.no_grad():
            reference = [model.forward_batch(b).float() for b in batches]
        torch.manual_seed(0)
        report = cls(cls.Options(**(options or {}))).quantize(
            model, prec, batches, loss=_loss_for(cls, model), generator=torch.Generator().manual_seed(0)
        )
        assert isinstance(report, QuantReport), f"{cls.name}.quantize must return a QuantReport"
        assert report.effective_weight_bits >= min(prec.w_bits, 16) - 1e-6 or prec.weights.kind == "full", (
            f"{cls.name} at {prec}: effective bits {report.effective_weight_bits} below nominal {prec.w_bits}"
        )
        err = _output_error(model, reference, batches)
        assert err == err and err < float("inf"), f"{cls.name} at {prec}: non-finite output"
        outs.append(err)
    assert outs[0] == outs[-1], f"{cls.name} at {prec}: two runs with the same seed differ ({outs})"
    assert outs[0] > 0, f"{cls.name} at {prec}: output identical to full precision: nothing was quantized"
    return outs[0]


def check_declarations(cls: type[Quantizer]) -> None:
    """A name, W16A16 refused (it is the full-precision row), and at least one candidate precision accepted."""
    assert isinstance(getattr(cls, "name", None), str) and cls.name, "a quantizer needs a non-empty `name`"
    assert cls().unsupported_reason(Precision.parse("W16A16")), "W16A16 must be refused (it is the FP row)"
    assert supported_precisions(cls), f"{cls.name} supports none of {candidate_precisions(cls)}"


def check_error_order(cls: type[Quantizer], make_model, options: dict | None = None) -> None:
    """A post-training method's output error at 8 weight bits is below that at its fewest supported
    weight-only bits (training methods move the weights by design: not checked for them)."""
    weight_only = sorted(
        (p for p in supported_precisions(cls) if p.weight_only and p.weights.kind == "int"), key=lambda p: p.w_bits
    )
    if cls.trains or len(weight_only) < 2 or weight_only[-1].w_bits == weight_only[0].w_bits:
        return
    low, high = weight_only[0], weight_only[-1]
    errors = {p.label: check_precision(cls, make_model, p, repeat=False, options=options) for p in (low, high)}
    assert errors[high.label] < errors[low.label], f"{cls.name}: {high} error not below {low} error: {errors}"


def check_quantizer(
    cls: type[Quantizer],
    make_model,
    precisions: list[Precision] | None = None,
    repeat: bool = True,
    options: dict | None = None,
) -> None:
    """``cls`` really quantizes every precision it declares, on any contract model, reproducibly.

    ``repeat=False`` skips the determinism re-run (for slower, real models); ``options`` are
    passed to the quantizer (e.g. fewer optimisation steps to keep a test fast).
    """
    check_declarations(cls)
    precisions = precisions if precisions is not None else supported_precisions(cls)
    errors = {p.label: check_precision(cls, make_model, p, repeat, options) for p in precisions}
    # A training quantizer also moves the weights (by design), so with a short test budget its
    # output error need not order by bit width; for post-training methods it must.
    if not cls.trains and "W8A16" in errors and "W3A16" in errors:
        assert errors["W8A16"] < errors["W3A16"], f"{cls.name}: 8-bit error not below 3-bit error: {errors}"


def check_model_family(family: ModelFamily, size: str, options=None) -> None:
    """A family's model builds, counts parameters, calibrates, runs forward and samples real images."""
    options = options if options is not None else family.Options()
    assert family.style in ("language", "diffusion")
    assert size in family.sizes
    model = family.build(size, options, torch.device("cpu"))
    assert isinstance(model, GenerativeModel)
    assert model.num_params() == family.num_params(size, options) > 0
    layers = model.quant_layers()
    assert layers and all(isinstance(m, torch.nn.Linear) for m in layers.values()), "quant_layers must be Linears"
    gen = torch.Generator().manual_seed(0)
    batches = model.calibration_batches(2, gen)
    assert len(batches) == 2
    with torch.no_grad():
        out = model.forward_batch(batches[0])
        assert torch.isfinite(out).all()
        imgs = model.sample(torch.arange(2) % model.num_classes, torch.Generator().manual_seed(0))
        again = model.sample(torch.arange(2) % model.num_classes, torch.Generator().manual_seed(0))
    assert imgs.dtype == torch.uint8 and imgs.dim() == 4 and imgs.shape[:2] == (2, 3)
    assert torch.equal(imgs, again), "sampling with the same seed must be deterministic"


def check_loss(cls: type[DistillLoss]) -> None:
    """Zero at equality, positive otherwise, finite on extreme logits, differentiable."""
    loss = cls()
    g = torch.Generator().manual_seed(0)
    shape = (2, 5, 16) if cls.kind == "logits" else (2, 4, 8, 8)
    t = torch.randn(shape, generator=g)
    assert float(loss(t.clone(), t)) == 0 or abs(float(loss(t.clone(), t))) < 1e-6
    s = torch.randn(shape, generator=g).requires_grad_(True)
    value = loss(s, t)
    assert value.dim() == 0 and float(value) > 0
    value.backward()
    assert s.grad is not None and torch.isfinite(s.grad).all()
    extreme = torch.randn(shape, generator=g) * 1e4
    assert torch.isfinite(loss(extreme, t)) and torch.isfinite(loss(t, extreme))


class QuantizerContract:
    """The quantizer contract as pytest tests, one per candidate precision the class supports
    (``test_quantizes[W4A16]``, ...: ``pytest -v`` shows which ran). Set ``quantizer_cls``; set
    ``options`` to pass options (e.g. fewer steps), override ``make_model`` for another model."""

    quantizer_cls: ClassVar[type[Quantizer]]
    options: ClassVar[dict | None] = None

    def make_model(self) -> GenerativeModel:
        from bitscale.testing.toy import ToyModel

        return ToyModel()

    def pytest_generate_tests(self, metafunc) -> None:
        # pytest calls this for each test of the class: the precision tests get one case per precision
        if "precision" in metafunc.fixturenames:
            labels = [p.label for p in supported_precisions(metafunc.cls.quantizer_cls)]
            metafunc.parametrize("precision", labels, ids=labels)

    def test_declarations(self) -> None:
        check_declarations(self.quantizer_cls)

    def test_quantizes(self, precision: str) -> None:
        check_precision(self.quantizer_cls, self.make_model, Precision.parse(precision), options=self.options)

    def test_more_bits_less_error(self) -> None:
        check_error_order(self.quantizer_cls, self.make_model, self.options)


class ModelFamilyContract:
    family: ClassVar[ModelFamily]
    size: ClassVar[str]

    def test_model_family_contract(self) -> None:
        check_model_family(self.family, self.size)


class DistillLossContract:
    loss_cls: ClassVar[type[DistillLoss]]

    def test_loss_contract(self) -> None:
        check_loss(self.loss_cls)


def check_generation_phases(model: GenerativeModel, labels: torch.Tensor | None = None, seed: int = 0) -> None:
    """A model that exposes generation phases (``bitscale.harness.phases``) reproduces ``sample`` through them,
    and equally seeded generations agree: what ``bitscale analyze`` relies on."""
    from bitscale.harness.phases import run_generation

    assert model.exposes_phases, f"{type(model).__name__} does not implement generation_phases"
    labels = labels if labels is not None else torch.arange(2) % model.num_classes
    with torch.no_grad():
        expected = model.sample(labels, torch.Generator().manual_seed(seed))
        outputs = []
        for _ in range(2):
            with model.generation_phases(labels, torch.Generator().manual_seed(seed)) as g:
                assert g.num_steps >= 1 and g.space in ("discrete", "continuous")
                run_generation(g)
                outputs.append(g.output())
                assert torch.equal(g.images(), expected), "driving the phases must give the images sample() gives"
    assert torch.equal(outputs[0], outputs[1]), "two generations from the same seed differ"
