"""KID is not reported: the unbiased estimator is biased on class-balanced samples (see evaluation/fid.py)."""

import numpy as np
import torch
from torch_fidelity.metric_kid import kid_features_to_metric

from bitscale.data import digits
from bitscale.harness.evaluation.fid import METRICS, score
from bitscale.harness.evaluation.references import reference_for


def _kid(x: np.ndarray, y: np.ndarray) -> float:
    return kid_features_to_metric(
        torch.from_numpy(x),
        torch.from_numpy(y),
        kid_subsets=1,
        kid_subset_size=len(x),
        kid_kernel="poly",
        kid_kernel_poly_degree=3,
        kid_kernel_poly_gamma=None,
        kid_kernel_poly_coef0=1,
        rng_seed=0,
        verbose=False,
    )["kernel_inception_distance_mean"]


def test_the_kid_estimator_is_biased_on_balanced_samples_and_unbiased_on_independent_ones():
    # Two sets from ONE distribution (10 well separated classes): the true KID is 0. Independent
    # draws average ~0; exactly balanced sets, as the protocol samples, come out clearly negative.
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 3, (10, 16))

    def draw(labels):
        return (centers[labels] + rng.normal(0, 1, (len(labels), 16))).astype(np.float64)

    balanced = [_kid(draw(np.arange(200) % 10), draw(np.arange(200) % 10)) for _ in range(30)]
    independent = [_kid(draw(rng.integers(0, 10, 200)), draw(rng.integers(0, 10, 200))) for _ in range(30)]
    err_b, err_i = np.std(balanced) / np.sqrt(30), np.std(independent) / np.sqrt(30)
    assert np.mean(balanced) < -5 * err_b
    assert abs(np.mean(independent)) < 4 * err_i


def test_scores_hold_fid_and_is_but_no_kid():
    images = digits.load("train").uint8()[:100]
    scores = score(images, reference_for("digits16"))
    assert set(scores) == set(METRICS) == {"fid", "isc"}
    assert np.isfinite(scores["fid"]) and scores["fid"] >= 0
