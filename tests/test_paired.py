"""Paired evaluation statistics on synthetic features with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from bitscale.harness.evaluation.paired import Frechet, combine_seeds, fp_distance, paired_bootstrap

D, N = 8, 400


def _shifted(rng: np.random.Generator, shift: float, n: int = N) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FP features ~ N(0, I); the 'quantized' ones are the same samples moved by ``shift`` along one axis.
    Against a reference N(0, I), ΔFID = |mu_fp + d|² - |mu_fp|² whose expectation is shift²."""
    labels = np.arange(n) % 10
    fp = rng.standard_normal((n, D))
    q = fp.copy()
    q[:, 0] += shift
    return q, fp, labels


def test_frechet_equals_torch_fidelity():
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((300, D)) * 1.5 + 0.3, rng.standard_normal((500, D))
    sa, sb = ({"mu": x.mean(0), "sigma": np.cov(x, rowvar=False)} for x in (a, b))
    want = fid_statistics_to_metric(sa, sb, False)["frechet_inception_distance"]
    assert Frechet(sb["mu"], sb["sigma"])(a) == pytest.approx(want, rel=1e-9)


def test_paired_interval_covers_the_true_difference_at_its_level():
    fid = Frechet(np.zeros(D), np.eye(D))
    rng = np.random.default_rng(1)
    shift, trials, covered, widths = 0.3, 40, 0, []
    for t in range(trials):
        q, fp, labels = _shifted(rng, shift)
        r = paired_bootstrap(q, fp, labels, fid, replicates=60, seed=t)
        covered += r.lo <= shift**2 <= r.hi
        widths.append(r.hi - r.lo)
    # 95% nominal; with 40 trials a coverage of 0.85..1 is consistent (binomial sd ~0.035).
    assert covered / trials >= 0.85
    # The true standard error of ΔFID = 2·shift·mean(fp[:, 0]) + shift² is 2·shift/√N.
    assert np.mean(widths) / (2 * 1.96) == pytest.approx(2 * shift / np.sqrt(N), rel=0.25)


def test_identical_cells_have_zero_difference_and_distance():
    fid = Frechet(np.zeros(D), np.eye(D))
    rng = np.random.default_rng(3)
    _, fp, labels = _shifted(rng, 0.0)
    r = paired_bootstrap(fp, fp, labels, fid, replicates=20)
    assert r.dfid == 0 and r.lo == 0 == r.hi
    assert fp_distance(fp, fp, labels) == 0
    independent = rng.standard_normal(fp.shape)
    assert fp_distance(independent, fp, labels) == pytest.approx(1.0, abs=0.1)


def test_bad_shapes_are_refused():
    fid = Frechet(np.zeros(D), np.eye(D))
    a = np.zeros((10, D))
    with pytest.raises(ValueError, match="must match"):
        paired_bootstrap(a, np.zeros((9, D)), np.arange(10), fid)
    with pytest.raises(ValueError, match="replicates"):
        paired_bootstrap(a, a, np.arange(10), fid, replicates=1)


def test_combining_seeds_pools_their_errors_unless_the_seeds_disagree():
    c = combine_seeds([1.0, 1.2, 0.8], [0.5, 0.5, 0.5])
    assert c.source == "samples" and c.mean == pytest.approx(1.0)
    assert c.se == pytest.approx(0.5 / np.sqrt(3))
    assert c.lo == pytest.approx(1.0 - 1.959964 * c.se, rel=1e-5) and not c.overlaps_fp
    # Seeds 10 standard errors apart: a seed-dependent quantizer. The spread is used, with Student t.
    d = combine_seeds([0.0, 5.0], [0.1, 0.1])
    assert d.source == "seeds" and d.overlaps_fp
    assert d.se == pytest.approx(np.std([0.0, 5.0], ddof=1) / np.sqrt(2))
    one = combine_seeds([0.15], [0.1])  # 0.15 ± 1.96·0.1 includes 0
    assert one.source == "samples" and one.overlaps_fp
    with pytest.raises(ValueError):
        combine_seeds([], [])
