"""Score generated images with torch-fidelity against a cached reference: FID and IS.

KID is not reported. Its unbiased MMD estimator assumes independent samples, but the protocol
draws exactly balanced labels and the digits reference split is stratified too: pairs within a
set then share a class less often than independent draws would, which biases the within-set
kernel means down by about 0.9/(m-1) x (same-class minus other-class kernel mean). With the
digits extractor's features (norm ~52 in 128 dimensions, so the cubic kernel is ~1e3-1e4) that
is about -80 for balanced halves of the reference itself (random halves: -3 +- 4), and about
-150 on generated cells: a number that looks like a score and measures the sampling design.
A class-stratified estimator needs both sets' labels; until the protocol passes them, no KID.
"""

from __future__ import annotations

import numpy as np
import torch

from bitscale.harness.artifacts import cache
from bitscale.harness.evaluation.references import Reference
from bitscale.hashing import json_digest

METRICS = ("fid", "isc")  # KID: see the module docstring


def _features(images: torch.Tensor, ref: Reference, layers: list[str], batch: int = 256) -> dict[str, torch.Tensor]:
    # A plain batched loop: torch-fidelity's dataset path forks DataLoader workers, which costs
    # more than the extraction itself for in-memory tensors of a few thousand small images.
    # (torch-fidelity is imported where it is used: its import takes seconds, and a run whose cells
    # are all in the store never scores.)
    from torch_fidelity.utils import create_feature_extractor

    cuda = torch.cuda.is_available()
    extractor = create_feature_extractor(
        ref.feature_extractor, layers, cuda=cuda, verbose=False, **dict(ref.extractor_kwargs)
    )
    extractor.eval()
    chunks: list[tuple[torch.Tensor, ...]] = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = images[i : i + batch]
            chunks.append(tuple(f.cpu() for f in extractor(x.cuda() if cuda else x)))
    return {name: torch.cat([c[j] for c in chunks]) for j, name in enumerate(layers)}


def _stats(feats: torch.Tensor) -> dict[str, np.ndarray]:
    f = feats.double().numpy()
    return {"mu": f.mean(0), "sigma": np.cov(f, rowvar=False)}


def reference_features(ref: Reference, layer: str) -> tuple[dict[str, np.ndarray], torch.Tensor | None]:
    """(statistics, raw features or None) of the reference set, cached on disk by reference hash."""
    name = f"eval/ref-{ref.dataset}-{ref.feature_extractor}-{layer}-{ref.reference_hash}"
    found = cache.load_artifact(name)
    if found is not None:
        t, _ = found
        stats = {"mu": t["mu"].numpy(), "sigma": t["sigma"].numpy()}
        return stats, t.get("features")
    pre = ref.precomputed_statistics()
    if pre is not None:
        return pre, None
    images = ref.images()
    feats = _features(images, ref, [layer])[layer]
    stats = _stats(feats)
    with cache.locked(name):
        cache.save_artifact(
            name,
            {"mu": torch.from_numpy(stats["mu"]), "sigma": torch.from_numpy(stats["sigma"]), "features": feats},
            {"reference_hash": ref.reference_hash, "count": len(images)},
        )
    return stats, feats


def score(images: torch.Tensor, ref: Reference, seed: int = 0) -> dict[str, float]:
    """FID and Inception Score of uint8 ``images`` (N, 3, H, W) against ``ref`` (no KID: module docstring)."""
    return score_with_features(images, ref, seed)[0]


def score_with_features(images: torch.Tensor, ref: Reference, seed: int = 0) -> tuple[dict[str, float], np.ndarray]:
    """``score`` plus the FID-layer features of ``images`` (float64 (N, d)): what paired evaluation compares."""
    from torch_fidelity.metric_fid import fid_statistics_to_metric
    from torch_fidelity.metric_isc import isc_featuresdict_to_metric
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    cls = FEATURE_EXTRACTORS_REGISTRY[ref.feature_extractor]
    fid_layer = cls.get_default_feature_layer_for_metric("fid")
    isc_layer = cls.get_default_feature_layer_for_metric("isc")
    feats = _features(images, ref, sorted({fid_layer, isc_layer}))
    ref_stats, _ = reference_features(ref, fid_layer)
    out = {
        "fid": float(fid_statistics_to_metric(_stats(feats[fid_layer]), ref_stats, False)["frechet_inception_distance"])
    }
    isc = isc_featuresdict_to_metric(
        feats,
        isc_layer,
        isc_splits=min(10, max(1, len(images) // 50)),
        samples_shuffle=True,
        rng_seed=seed,
        verbose=False,
    )
    out["isc"] = float(isc["inception_score_mean"])
    for k, v in out.items():
        if not np.isfinite(v):
            raise FloatingPointError(f"{k} is not finite ({v}); the samples are degenerate")
    return out, feats[fid_layer].double().numpy()


def fid_reference(ref: Reference):
    """A ``paired.Frechet`` against ``ref``'s FID-layer statistics (the same numbers ``score`` uses)."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    from bitscale.harness.evaluation.paired import Frechet

    layer = FEATURE_EXTRACTORS_REGISTRY[ref.feature_extractor].get_default_feature_layer_for_metric("fid")
    stats, _ = reference_features(ref, layer)
    return Frechet(stats["mu"], stats["sigma"])


def protocol_fingerprint(details: dict) -> str:
    """Stable short hash of a protocol's details (reference, extractor, samples, sampler, seed)."""
    return json_digest(details, 16)
