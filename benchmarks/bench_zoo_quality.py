"""Tiny-zoo quality floors and ceilings: what the full-precision FIDs of the zoo should be read against.

    python benchmarks/bench_zoo_quality.py                  # every tiny family, 1000 samples
    python benchmarks/bench_zoo_quality.py dit-tiny --samples 500

For each family, with the evaluation the harness uses (digits-classifier features, the 360
held-out test digits as reference, balanced labels):

- **untrained**: each size's architecture with freshly initialised generator weights (the
  family's own init, seed 0) and the trained tokenizer/autoencoder, sampled like the trained
  model. The trained models' FIDs (``experiments/zoo_fp16.yaml``) must be far below these.
- **codec floor**: held-out digits encoded and decoded by the family's tokenizer/autoencoder, the
  best a generator on top of it could score.
- **data floor**: the real training digits against the held-out ones: sampling noise of a
  360-image reference set, the best any model can score.

Uses the shipped tiny zoo (with BITSCALE_ZOO_WEIGHTS=trained, the cache's, training what is
missing). One thread, like the harness tests.
"""

from __future__ import annotations

import argparse

import torch
from tabulate import tabulate

from bitscale.data import digits
from bitscale.harness.evaluation.fid import score
from bitscale.harness.evaluation.references import reference_for
from bitscale.harness.plugin_loader import get_plugins


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] (N, 1 or 3, H, W) as the uint8 RGB the evaluation takes."""
    out = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return out.expand(-1, 3, -1, -1) if out.shape[1] == 1 else out


@torch.no_grad()
def reconstruct(model, images: torch.Tensor) -> torch.Tensor:
    """``images`` through the model's codec (each family keeps it under its own name)."""
    if hasattr(model, "tokenizer"):  # LlamaGen: VQ tokenizer
        return model.tokenizer.decode_code(model.tokenizer.encode_indices(images))
    if hasattr(model, "latent_scale"):  # DiT, MAR (dit-tiny's autoencoder): KL autoencoder, posterior mean
        return model.vae.decode(model.vae.encode(images).latent_dist.mean).sample
    return model.vae.idx_to_img(model.vae.img_to_idx(images))  # VAR: multi-scale VQ-VAE


@torch.no_grad()
def untrained_fid(model, n: int, ref) -> float:
    """FID of ``model`` with its generator re-initialised as its constructor does (seed 0)."""
    torch.manual_seed(0)
    fresh = type(model.module)(model.module.config)
    model.module.load_state_dict(fresh.state_dict())
    labels = torch.arange(digits.NUM_CLASSES).repeat_interleave(n // digits.NUM_CLASSES)
    return score(model.sample(labels, torch.Generator().manual_seed(0)), ref)["fid"]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("families", nargs="*", help="tiny families (default: every trainable one)")
    p.add_argument("--samples", type=int, default=1000, help="samples per untrained model (default 1000)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    plugins = get_plugins()
    names = args.families or [e.name for e in plugins.models if e.obj.trainable]
    ref = reference_for("digits16")
    test, train = digits.load("test").images, digits.load("train").images
    print(f"data floor (train {len(train)} vs test {len(test)} digits): FID {score(to_uint8(train), ref)['fid']:.2f}")
    rows = []
    for name in names:
        family = plugins.models.get(name)
        floor = None
        for size in family.sizes:
            model = family.build(size, family.Options(), torch.device("cpu"))
            if floor is None:
                floor = score(to_uint8(reconstruct(model, test)), ref)["fid"]
            rows.append([name, size, f"{model.num_params():,}", untrained_fid(model, args.samples, ref), floor])
            print(*rows[-1], flush=True)
    print(tabulate(rows, headers=["family", "size", "params", "untrained FID", "codec floor FID"], floatfmt=".1f"))


if __name__ == "__main__":
    main()
