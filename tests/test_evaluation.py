"""The digits FID protocol: its feature extractor is the same on every machine, and part of the reference."""

import torch

from bitscale.harness.evaluation import digits_classifier
from bitscale.harness.evaluation.references import reference_for


def test_digits_classifier_weights_do_not_depend_on_the_thread_count(tmp_path, monkeypatch):
    # Trained here (not the shipped copy), the classifier's weights must not depend on how many
    # cores the machine has (a 2-thread build once moved FIDs by ~1).
    monkeypatch.setenv("BITSCALE_CACHE", str(tmp_path))
    monkeypatch.setenv("BITSCALE_ZOO_WEIGHTS", "trained")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        _, two = digits_classifier.train_classifier(force=True)
        torch.set_num_threads(1)
        _, one = digits_classifier.train_classifier(force=True)
    finally:
        torch.set_num_threads(before)
    assert two["sha256"] == one["sha256"] and two["test_accuracy"] > 0.95
    # ... and the file's hash names the reference, so cached reference statistics and protocol
    # fingerprints of another classifier are never mixed with these.
    assert reference_for("digits16").reference_hash.endswith(f"-net-{one['sha256'][:16]}")
