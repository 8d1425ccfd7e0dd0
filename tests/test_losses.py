"""Distillation losses against direct computations from their definitions, gradients included."""

from __future__ import annotations

import math

import pytest
import torch

from bitscale.harness.plugin_loader import get_plugins
from bitscale.plugins.losses.js import JensenShannon, JSOptions
from bitscale.plugins.losses.kl import ForwardKL, ReverseKL
from bitscale.plugins.losses.mse import MSE
from bitscale.plugins.losses.topkld import TopKLD, TopKLDOptions, top_k_mask
from bitscale.testing.contract_checks import check_loss
from bitscale.testing.toy import ToyModel

LOGIT_LOSSES = (ForwardKL, ReverseKL, TopKLD, JensenShannon)
ALL_LOSSES = (*LOGIT_LOSSES, MSE)

# Hand-made distributions over 4 classes: a peaked teacher and a flatter, differently ordered student.
P_T = [0.5, 0.3, 0.15, 0.05]
P_S = [0.2, 0.4, 0.3, 0.1]


def logits_of(p: list[float]) -> torch.Tensor:
    return torch.tensor(p, dtype=torch.float64).log().view(1, 1, -1)


def kl(p: list[float], q: list[float], classes=None) -> float:
    idx = range(len(p)) if classes is None else classes
    return sum(p[i] * math.log(p[i] / q[i]) for i in idx)


def topkld_direct(pt, ps, head: set[int], generalized: bool) -> float:
    """Eq. 7 written out class by class (generalized: plus -p + q per term)."""
    total = 0.0
    for i in range(len(pt)):
        if i in head:
            total += ps[i] * math.log(ps[i] / pt[i]) + ((pt[i] - ps[i]) if generalized else 0.0)
        else:
            total += pt[i] * math.log(pt[i] / ps[i]) + ((ps[i] - pt[i]) if generalized else 0.0)
    return total


def naive(loss_name: str, s: torch.Tensor, t: torch.Tensor, head: torch.Tensor | None = None) -> torch.Tensor:
    """Straight-from-the-definition versions (softmax, log, no masking) for gradient checks."""
    ps, pt = s.softmax(-1), t.softmax(-1)
    if loss_name == "forward-kl":
        per = pt * (pt.log() - ps.log())
    elif loss_name == "reverse-kl":
        per = ps * (ps.log() - pt.log())
    elif loss_name == "js":
        m = (ps + pt) / 2
        per = 0.5 * pt * (pt.log() - m.log()) + 0.5 * ps * (ps.log() - m.log())
    elif loss_name == "topkld":
        per = torch.where(head, ps * (ps.log() - pt.log()) + pt - ps, pt * (pt.log() - ps.log()) + ps - pt)
    else:
        raise KeyError(loss_name)
    return per.sum(-1).mean()


# --------------------------------------------------------------------------- values


def test_forward_and_reverse_kl_match_definition():
    s, t = logits_of(P_S), logits_of(P_T)
    assert float(ForwardKL()(s, t)) == pytest.approx(kl(P_T, P_S), rel=1e-5)
    assert float(ReverseKL()(s, t)) == pytest.approx(kl(P_S, P_T), rel=1e-5)


def test_js_matches_definition():
    s, t = logits_of(P_S), logits_of(P_T)
    m = [(a + b) / 2 for a, b in zip(P_T, P_S)]
    assert float(JensenShannon()(s, t)) == pytest.approx(0.5 * kl(P_T, m) + 0.5 * kl(P_S, m), rel=1e-5)
    beta = 0.2
    mb = [beta * a + (1 - beta) * b for a, b in zip(P_T, P_S)]
    direct = beta * kl(P_T, mb) + (1 - beta) * kl(P_S, mb)
    assert float(JensenShannon(JSOptions(beta=beta))(s, t)) == pytest.approx(direct, rel=1e-5)


def test_js_is_symmetric_and_bounded_by_log2():
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(3, 5, 11, generator=g) * 8, torch.randn(3, 5, 11, generator=g) * 8
    assert float(JensenShannon()(s, t)) == pytest.approx(float(JensenShannon()(t, s)), rel=1e-5)
    assert 0 < float(JensenShannon()(s, t)) <= math.log(2) + 1e-6


@pytest.mark.parametrize("form", ["generalized", "eq7"])
@pytest.mark.parametrize("k", [0, 1, 2, 3, 4])
def test_topkld_splits_at_k(form, k):
    s, t = logits_of(P_S), logits_of(P_T)
    head = set(range(k))  # P_T is sorted in decreasing order: its top-k classes are 0..k-1
    loss = TopKLD(TopKLDOptions(k=k, form=form))
    assert float(loss(s, t)) == pytest.approx(topkld_direct(P_T, P_S, head, form == "generalized"), rel=1e-5, abs=1e-7)


def test_topkld_head_is_the_teachers_top_k_not_the_students():
    # Teacher ranks class 3 first; the student ranks class 0 first: M_s must follow the teacher.
    pt, ps = [0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]
    value = float(TopKLD(TopKLDOptions(k=1))(logits_of(ps), logits_of(pt)))
    assert value == pytest.approx(topkld_direct(pt, ps, {3}, True), rel=1e-5)


@pytest.mark.parametrize("form", ["generalized", "eq7"])
def test_topkld_limits_are_reverse_and_forward_kl(form):
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(2, 6, 32, generator=g) * 3, torch.randn(2, 6, 32, generator=g) * 3
    full = TopKLD(TopKLDOptions(k=32, form=form))(s, t)
    assert float(full) == pytest.approx(float(ReverseKL()(s, t)), rel=1e-5)
    none = TopKLD(TopKLDOptions(k=0, form=form))(s, t)
    assert float(none) == pytest.approx(float(ForwardKL()(s, t)), rel=1e-5)
    # K beyond the vocabulary is clamped to V (sampling from everything).
    assert float(TopKLD(TopKLDOptions(k=10_000, form=form))(s, t)) == pytest.approx(float(full), rel=1e-6)


def test_generalized_form_is_eq7_plus_mass_balance():
    g = torch.Generator().manual_seed(2)
    s, t = torch.randn(4, 3, 20, generator=g) * 2, torch.randn(4, 3, 20, generator=g) * 2
    k = 7
    head = top_k_mask(t, k)
    mass = ((t.softmax(-1) - s.softmax(-1)) * head).sum(-1).mean()
    eq7 = TopKLD(TopKLDOptions(k=k, form="eq7"))(s, t)
    gen = TopKLD(TopKLDOptions(k=k, form="generalized"))(s, t)
    assert float(gen) == pytest.approx(float(eq7 + 2 * mass), rel=1e-5, abs=1e-6)


def test_eq7_verbatim_can_go_negative_generalized_cannot():
    # Why "generalized" is the default: Eq. 7's partial sums reward moving mass out of the top-K.
    pt = [0.9, 0.1]
    ps = [0.3, 0.7]
    s, t = logits_of(ps), logits_of(pt)
    assert float(TopKLD(TopKLDOptions(k=1, form="eq7"))(s, t)) < 0
    assert float(TopKLD(TopKLDOptions(k=1))(s, t)) > 0
    g = torch.Generator().manual_seed(3)
    for _ in range(20):
        a, b = torch.randn(2, 4, 9, generator=g) * 4, torch.randn(2, 4, 9, generator=g) * 4
        assert float(TopKLD(TopKLDOptions(k=3))(a, b)) >= 0


def test_temperature_divides_both_logits():
    g = torch.Generator().manual_seed(4)
    s, t = torch.randn(2, 3, 10, generator=g), torch.randn(2, 3, 10, generator=g)
    for cls in LOGIT_LOSSES:
        hot = cls(cls.Options(temperature=2.5))(s, t)
        assert float(hot) == pytest.approx(float(cls()(s / 2.5, t / 2.5)), rel=1e-5), cls.name


def test_mse_matches_definition():
    g = torch.Generator().manual_seed(5)
    s, t = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    assert float(MSE()(s, t)) == pytest.approx(float(((s - t) ** 2).mean()), rel=1e-6)


# --------------------------------------------------------------------------- ties


def test_top_k_mask_breaks_ties_by_index():
    scores = torch.tensor([1.0, 3.0, 3.0, 3.0, 0.0, 3.0])
    assert top_k_mask(scores, 2).tolist() == [False, True, True, False, False, False]
    assert top_k_mask(scores, 4).tolist() == [False, True, True, True, False, True]
    assert top_k_mask(scores, 5).tolist() == [True, True, True, True, False, True]


def test_top_k_mask_agrees_with_a_stable_sort_on_heavy_ties():
    g = torch.Generator().manual_seed(6)
    scores = torch.randint(0, 4, (50, 40), generator=g).float()  # many ties everywhere
    for k in (1, 5, 13, 39):
        order = torch.sort(scores, dim=-1, descending=True, stable=True).indices[:, :k]
        expected = torch.zeros_like(scores, dtype=torch.bool).scatter(-1, order, True)
        assert torch.equal(top_k_mask(scores, k), expected), k


def test_topkld_with_tied_teacher_logits_is_deterministic_and_correct():
    pt = [0.1, 0.3, 0.3, 0.3]  # three-way tie for first; K=2 takes classes 1 and 2
    ps = [0.25, 0.25, 0.2, 0.3]
    loss = TopKLD(TopKLDOptions(k=2))
    value = float(loss(logits_of(ps), logits_of(pt)))
    assert value == pytest.approx(topkld_direct(pt, ps, {1, 2}, True), rel=1e-5)
    assert value == float(loss(logits_of(ps), logits_of(pt)))


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("name", ["forward-kl", "reverse-kl", "js", "topkld"])
def test_gradients_match_the_definition(name):
    g = torch.Generator().manual_seed(7)
    s0 = (torch.randn(2, 3, 12, generator=g) * 2).double()
    t = (torch.randn(2, 3, 12, generator=g) * 2).double()
    head = top_k_mask(t, 5)
    loss = get_plugins().losses.get(name)(TopKLDOptions(k=5) if name == "topkld" else None)
    s = s0.clone().requires_grad_(True)
    (got,) = torch.autograd.grad(loss(s, t), s)
    r = s0.clone().requires_grad_(True)
    (want,) = torch.autograd.grad(naive(name, r, t, head), r)
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-6)


def test_kl_gradients_match_closed_forms():
    g = torch.Generator().manual_seed(8)
    s = torch.randn(1, 4, 9, generator=g).requires_grad_(True)
    t = torch.randn(1, 4, 9, generator=g)
    n = 4  # tokens averaged over
    ps, pt = s.detach().softmax(-1), t.softmax(-1)
    (g_fwd,) = torch.autograd.grad(ForwardKL()(s, t), s)
    torch.testing.assert_close(g_fwd, (ps - pt) / n, rtol=1e-4, atol=1e-6)
    (g_rev,) = torch.autograd.grad(ReverseKL()(s, t), s)
    d = ps.log() - pt.log()
    torch.testing.assert_close(g_rev, ps * (d - (ps * d).sum(-1, keepdim=True)) / n, rtol=1e-4, atol=1e-6)


def test_mse_gradient():
    s = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    t = torch.tensor([[0.0, 2.0], [5.0, 4.0]])
    (grad,) = torch.autograd.grad(MSE()(s, t), s)
    torch.testing.assert_close(grad, 2 * (s.detach() - t) / 4)


# --------------------------------------------------------------------------- edge cases


@pytest.mark.parametrize("cls", ALL_LOSSES, ids=lambda c: c.name)
def test_zero_when_student_equals_teacher(cls):
    g = torch.Generator().manual_seed(9)
    t = torch.randn(3, 7, 50, generator=g) * 5
    t[0, 0, :3] = float("-inf")  # masked entries, identical in both
    s = t.clone().requires_grad_(True)
    value = cls()(s, t)
    assert abs(float(value.detach())) < 1e-6
    (grad,) = torch.autograd.grad(value, s)
    assert torch.isfinite(grad).all() and grad.abs().max() < 1e-5
    if cls is TopKLD:
        for k in (0, 1, 17, 50):
            assert abs(float(TopKLD(TopKLDOptions(k=k))(t.clone(), t))) < 1e-6


@pytest.mark.parametrize("cls", ALL_LOSSES, ids=lambda c: c.name)
def test_finite_for_extreme_and_masked_logits(cls):
    g = torch.Generator().manual_seed(10)
    big = torch.randn(2, 5, 16, generator=g).sign() * 1e4
    normal = torch.randn(2, 5, 16, generator=g)
    masked = normal.clone()
    masked[..., :4] = float("-inf")
    student_masked = torch.randn(2, 5, 16, generator=g)
    student_masked[..., 2:6] = float("-inf")  # overlaps the teacher's mask only in part
    for s, t in (
        (big, normal),
        (normal, big),
        (big, big.flip(-1)),
        (masked, masked.clone()),
        (normal, masked),
        (masked, normal),
        (student_masked, masked),
    ):
        leaf = s.clone().requires_grad_(True)
        value = cls()(leaf, t)
        assert torch.isfinite(value), (cls.name, float(value))
        (grad,) = torch.autograd.grad(value, leaf)
        assert torch.isfinite(grad).all(), cls.name


@pytest.mark.parametrize("cls", LOGIT_LOSSES, ids=lambda c: c.name)
def test_masked_classes_are_the_same_as_absent_classes(cls):
    g = torch.Generator().manual_seed(11)
    s, t = torch.randn(2, 3, 12, generator=g), torch.randn(2, 3, 12, generator=g)
    loss = cls(TopKLDOptions(k=4)) if cls is TopKLD else cls()
    masked_s, masked_t = s.clone(), t.clone()
    masked_s[..., 8:] = float("-inf")
    masked_t[..., 8:] = float("-inf")
    assert float(loss(masked_s, masked_t)) == pytest.approx(float(loss(s[..., :8], t[..., :8])), rel=1e-5)


def test_shape_mismatch_is_a_clear_error():
    for cls in ALL_LOSSES:
        with pytest.raises(ValueError, match="differ in shape"):
            cls()(torch.zeros(2, 3, 4), torch.zeros(2, 3, 5))


def test_bf16_inputs_are_computed_in_float32():
    g = torch.Generator().manual_seed(12)
    s, t = torch.randn(2, 3, 10, generator=g), torch.randn(2, 3, 10, generator=g)
    for cls in ALL_LOSSES:
        out = cls()(s.bfloat16(), t.bfloat16())
        assert out.dtype == torch.float32
        assert float(out) == pytest.approx(float(cls()(s.bfloat16().float(), t.bfloat16().float())), rel=1e-6)


# --------------------------------------------------------------------------- K from the model


def test_topkld_k_defaults_to_the_models_sampling_top_k():
    model = ToyModel(depth=1)
    loss = TopKLD()
    model.sampler = {"top_k": 5, "top_p": 0.9}
    loss.prepare(model)
    assert (loss.k, loss.k_source, loss.k_for(32)) == (5, "sampler", 5)

    fixed = TopKLD(TopKLDOptions(k=3))
    fixed.prepare(model)
    assert (fixed.k, fixed.k_source) == (3, "option")

    for sampler in ({"top_k": 0}, {"temperature": 1.0}, {"top_k": None}):
        model.sampler = sampler
        loss = TopKLD()
        loss.prepare(model)
        assert loss.k is None and loss.k_source == "fallback"
        assert loss.k_for(4096) == 614 and loss.k_for(32) == 5  # round(0.15 V)
    assert TopKLD(TopKLDOptions(fallback_fraction=0.5)).k_for(10) == 5


# --------------------------------------------------------------------------- plugin contract


def test_every_registered_loss_passes_the_contract():
    losses = get_plugins().losses
    assert {"forward-kl", "reverse-kl", "topkld", "mse", "js"} <= set(losses.names())
    for entry in losses:
        check_loss(entry.obj)


def test_kinds_and_model_styles():
    for cls in LOGIT_LOSSES:
        assert cls.kind == "logits"
        assert cls().applies_to("language") is None
        assert "language-style" in cls().applies_to("diffusion")
    assert MSE.kind == "regression"
    assert MSE().applies_to("diffusion") is None and MSE().applies_to("language") is None
