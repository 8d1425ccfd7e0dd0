"""A small in-domain digits classifier, trained by bitscale and shipped with it, used as torch-fidelity's
feature extractor (artifact ``eval/digits-classifier``).

Inception-v3 features of 16x16 upsampled digits say little about digit quality; a classifier
trained on the same data gives FID the semantics it has on ImageNet (as done for MNIST FIDs).
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase

from bitscale.data import digits
from bitscale.harness.artifacts import cache
from bitscale.harness.threads import single_thread

EXTRACTOR_NAME = "bitscale-digits"
ARTIFACT = "eval/digits-classifier"
FEATURES = ("128", "logits_unbiased")
SEED = 0
EPOCHS = 25


class DigitsNet(nn.Module):
    """Two conv blocks and a 128-d penultimate layer (the FID feature)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * 4 * 4, 128)
        self.fc2 = nn.Linear(128, digits.NUM_CLASSES)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: float (N, 1, 16, 16) in [-1, 1] -> (128-d features, logits)."""
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        f = F.relu(self.fc1(h.flatten(1)))
        return f, self.fc2(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)[1]


def _fresh(manifest: dict) -> bool:
    """Trained by this recipe on the current data, on one thread (older caches trained multi-threaded)."""
    return (
        manifest.get("threads") == 1
        and manifest.get("seed") == SEED
        and manifest.get("epochs") == EPOCHS
        and manifest.get("data_hash") == digits.data_hash(cache.cache_dir())
    )


def load_classifier() -> tuple[DigitsNet, dict]:
    """The classifier in use, with its manifest: the shipped one (default; the same bytes on every
    machine, so the same FIDs), or with trained-here weights the cached one, trained if missing."""
    found = cache.load_fresh(ARTIFACT, _fresh)
    return _loaded(*found) if found is not None else train_classifier()


def weights_sha256() -> str:
    """sha256 of the classifier's weights file in use: what makes the digits FID protocol."""
    manifest = cache.load_manifest(ARTIFACT)
    if manifest is None or not _fresh(manifest) or not cache.has_weights(ARTIFACT):
        train_classifier()  # trained-here weights are in use and none are cached yet
    return cache.weights_sha256(ARTIFACT)


def _loaded(state: dict[str, torch.Tensor], manifest: dict) -> tuple[DigitsNet, dict]:
    net = DigitsNet()
    net.load_state_dict(state)
    return net.eval(), manifest


def train_classifier(force: bool = False) -> tuple[DigitsNet, dict]:
    """Train (or load the cached) classifier deterministically into the user's cache; return it with its manifest.

    One thread, like the tiny zoo: the thread count changes float reductions. Across CPUs one
    thread is not enough for identical weights, which is why a trained copy ships with bitscale.
    """
    with cache.locked(ARTIFACT), single_thread():
        found = None if force else cache.load_fresh(ARTIFACT, _fresh)
        if found is not None:
            return _loaded(*found)
        torch.manual_seed(SEED)
        net = DigitsNet()
        train, test = digits.load("train"), digits.load("test")
        x, y = train.images[:, :1], train.labels
        opt = torch.optim.Adam(net.parameters(), lr=2e-3)
        g = torch.Generator().manual_seed(SEED)
        start, cpu_start = time.perf_counter(), time.process_time()
        for _ in range(EPOCHS):
            perm = torch.randperm(len(y), generator=g)
            for i in range(0, len(y), 64):
                idx = perm[i : i + 64]
                # Small random shifts make the features robust to the blur generators produce.
                xb = torch.roll(x[idx], shifts=tuple(torch.randint(-1, 2, (2,), generator=g).tolist()), dims=(2, 3))
                loss = F.cross_entropy(net(xb), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        net.eval()
        with torch.no_grad():
            acc = (net(test.images[:, :1]).argmax(1) == test.labels).float().mean().item()
        manifest = {
            "data_hash": digits.data_hash(cache.cache_dir()),
            "seed": SEED,
            "epochs": EPOCHS,
            "test_accuracy": acc,
            "final_loss": loss.item(),
            "seconds": round(time.perf_counter() - start, 2),
            "cpu_seconds": round(time.process_time() - cpu_start, 2),
            "threads": 1,
            "torch": torch.__version__,
        }
        return net, cache.save_artifact(ARTIFACT, net.state_dict(), manifest)


class DigitsFeatureExtractor(FeatureExtractorBase):
    """torch-fidelity extractor: uint8 (N, 3, H, W) images -> 128-d features and logits."""

    def __init__(self, name: str, features_list: list[str], **kwargs) -> None:
        super().__init__(name, features_list)
        self.net, _ = load_classifier()
        self.net.requires_grad_(False)

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return FEATURES

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return {"isc": "logits_unbiased", "fid": "128", "kid": "128", "prc": "128"}[metric]

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        return torch.zeros(1, 3, digits.SIZE, digits.SIZE, dtype=torch.uint8)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"{EXTRACTOR_NAME} expects uint8 (N, 3, H, W) images, got {x.dtype} {tuple(x.shape)}")
        gray = x.float().mean(1, keepdim=True) / 127.5 - 1
        if gray.shape[-2:] != (digits.SIZE, digits.SIZE):
            gray = F.interpolate(gray, size=(digits.SIZE, digits.SIZE), mode="bilinear", align_corners=False)
        feats, logits = self.net.features(gray.to(next(self.net.parameters()).device))
        out = {"128": feats, "logits_unbiased": logits}
        return tuple(out[name] for name in self.features_list)


def register() -> None:
    """Make the extractor known to torch-fidelity (idempotent)."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

    if EXTRACTOR_NAME not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(EXTRACTOR_NAME, DigitsFeatureExtractor)
