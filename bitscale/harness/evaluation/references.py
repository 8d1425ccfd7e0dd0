"""Reference sets: what generated images are compared against, and with which feature extractor.

Each model declares its ``dataset`` id; the id picks a ``Reference`` here. Reference statistics
(mean and covariance of features) are computed once and cached on disk.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bitscale.harness.errors import BitscaleError


@dataclass(frozen=True)
class Reference:
    dataset: str
    feature_extractor: str
    #: Identifies the reference data exactly (hash of the data or of the statistics file).
    reference_hash: str
    #: Extra keyword arguments for torch-fidelity's extractor (e.g. a local weights path).
    extractor_kwargs: tuple[tuple[str, str], ...] = ()

    def images(self) -> torch.Tensor | None:
        """uint8 (N, 3, H, W) reference images, or None when only statistics are available."""
        if self.dataset == "digits16":
            from bitscale.data import digits

            return digits.load("test").uint8()
        return None

    def precomputed_statistics(self) -> dict[str, np.ndarray] | None:
        """``{"mu", "sigma"}`` from a statistics file (the ADM reference batch), if this reference has one."""
        if self.dataset == "imagenet256":
            with np.load(_imagenet_npz()) as data:
                if "mu" not in data or "sigma" not in data:
                    raise BitscaleError(f"{_imagenet_npz()}: no 'mu'/'sigma' arrays; expected the ADM reference batch")
                return {"mu": data["mu"].astype(np.float64), "sigma": data["sigma"].astype(np.float64)}
        return None


def _imagenet_npz() -> Path:
    path = os.environ.get("BITSCALE_IMAGENET_REF")
    if not path or not Path(path).is_file():
        raise BitscaleError(
            "FID on ImageNet needs the ADM reference batch: set BITSCALE_IMAGENET_REF to a local "
            "VIRTUAL_imagenet256_labeled.npz (bitscale never downloads it)"
        )
    return Path(path)


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def reference_for(dataset: str) -> Reference:
    """The reference set of data set id ``dataset``."""
    if dataset == "digits16":
        from bitscale.data import digits
        from bitscale.harness.artifacts import cache
        from bitscale.harness.evaluation import digits_classifier

        digits_classifier.register()
        # The classifier's weights file is part of the reference: other features, other FIDs (and
        # other cached reference statistics). The shipped file makes it the same on every machine.
        net = digits_classifier.weights_sha256()[:16]
        data = digits.data_hash(cache.cache_dir())
        return Reference(dataset, digits_classifier.EXTRACTOR_NAME, f"digits-test-{data}-net-{net}")
    if dataset == "imagenet256":
        weights = os.environ.get("BITSCALE_INCEPTION_WEIGHTS")
        if not weights or not Path(weights).is_file():
            raise BitscaleError(
                "FID on ImageNet uses torch-fidelity's inception-v3-compat: set BITSCALE_INCEPTION_WEIGHTS "
                "to a local copy of its weights file (pt_inception-2015-12-05-6726825d.pth)"
            )
        return Reference(
            dataset,
            "inception-v3-compat",
            f"adm-{_file_hash(_imagenet_npz())}",
            (("feature_extractor_weights_path", weights),),
        )
    raise BitscaleError(f"no reference set for data set {dataset!r}; known: digits16, imagenet256")
