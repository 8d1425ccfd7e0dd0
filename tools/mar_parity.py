"""Parity of bitscale's MAR with the official code (LTH14/mar), on small random-init configs.

    python tools/mar_parity.py --official /path/to/mar            # compare, print a report
    python tools/mar_parity.py --official /path/to/mar --write-fixtures   # also (re)write tests/data/

The official repository is a local copy the developer provides (``git clone
https://github.com/LTH14/mar``); CI never needs it: the fixtures this script writes let
``tests/test_mar.py`` re-check parity without it. Checked, all in float32 on CPU:

1. names and shapes: MAR-B (``mar_base``, diffusion head 6 x 1024) and the KL-16 autoencoder,
   built on the meta device in both implementations, must have identical state-dict keys;
2. a small MAR with every parameter randomised (so the zero-initialised adaLN and output layers
   do not make the comparison trivial), loaded strictly into both: encoder/decoder output ``z``,
   diffusion-head output (plain and ``forward_with_cfg``), max abs diff <= 1e-5;
3. generated latents for a fixed seed (4 AR iterations, cfg 2.0 linear, temperature 0.9, 10 head
   steps): the official ``sample_tokens`` draws orders with NumPy, bitscale with its
   ``torch.Generator``; the script hands the official sampler the orders bitscale draws, taken
   from torch's global generator seeded the same, so both consume the same noise stream;
4. the KL-16 autoencoder (full size, random weights, a 32x32 input) and a small one: posterior
   mean/std and decoded images.

Import shims, nothing else touched: the official code moves tensors with ``.cuda()``
unconditionally; ``torch.Tensor.cuda`` is made the identity while the script runs (CPU only).
Every other import (timm, scipy, numpy, tqdm) is the real package.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from functools import partial
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bitscale.plugins.models.mar.mar import MAR, RELEASED_MAR, MARConfig
from bitscale.plugins.models.mar.sampling import random_orders, sample_tokens
from bitscale.plugins.models.mar.vae import KLAutoencoder

FIXTURES = ROOT / "tests" / "data"
KEYS_FILE = FIXTURES / "mar-official-keys.json"
OUTPUTS_FILE = FIXTURES / "mar-parity.safetensors"
TOL = 1e-5

#: The small config compared (bitscale field names; the official constructor takes the same ones).
SMALL = {
    "img_size": 64,
    "vae_stride": 16,
    "patch_size": 1,
    "encoder_embed_dim": 64,
    "encoder_depth": 1,
    "encoder_num_heads": 2,
    "decoder_embed_dim": 64,
    "decoder_depth": 1,
    "decoder_num_heads": 2,
    "vae_embed_dim": 4,
    "buffer_size": 4,
    "class_num": 10,
    "diffloss_d": 2,
    "diffloss_w": 64,
}
SAMPLE = {
    "num_iter": 4,
    "cfg": 2.0,
    "cfg_schedule": "linear",
    "temperature": 0.9,
    "sampling_steps": 10,
    "seed": 7,
    "batch": 3,
}
SMALL_VAE = {"ch": 32, "ch_mult": (1, 1), "embed_dim": 4, "resolution": 32}
KL16 = {"ch": 128, "ch_mult": (1, 1, 2, 2, 4), "embed_dim": 16, "resolution": 256}


def import_official(path: Path):
    """The official ``models.mar`` and ``models.vae`` modules, with ``.cuda()`` as the identity."""
    torch.Tensor.cuda = lambda self, *a, **k: self  # CPU only: see the module docstring
    sys.path.insert(0, str(path))
    return importlib.import_module("models.mar"), importlib.import_module("models.vae")


def official_mar(mar_mod, cfg: dict, steps: str = "100"):
    return mar_mod.MAR(**cfg, mlp_ratio=4.0, norm_layer=partial(nn.LayerNorm, eps=1e-6), num_sampling_steps=steps)


def official_vae(vae_mod, ch: int, ch_mult: tuple[int, ...], embed_dim: int, resolution: int) -> nn.Module:
    """The official ``AutoencoderKL`` (its own encode/decode), with the encoder/decoder sizes given."""
    vae = vae_mod.AutoencoderKL.__new__(vae_mod.AutoencoderKL)
    nn.Module.__init__(vae)
    vae.encoder = vae_mod.Encoder(ch=ch, ch_mult=ch_mult, z_channels=embed_dim, resolution=resolution)
    vae.decoder = vae_mod.Decoder(ch=ch, ch_mult=ch_mult, z_channels=embed_dim, resolution=resolution)
    vae.use_variational, vae.embed_dim = True, embed_dim
    vae.quant_conv = nn.Conv2d(2 * embed_dim, 2 * embed_dim, 1)
    vae.post_quant_conv = nn.Conv2d(embed_dim, embed_dim, 1)
    return vae


def randomise(module: nn.Module, seed: int) -> None:
    """Every parameter from N(0, 0.1^2) (LayerNorm weights around 1), so no zero layer hides a difference."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(
                torch.randn(p.shape, generator=g) * 0.1
                + (1.0 if name.endswith("ln.weight") or "norm" in name and name.endswith("weight") else 0.0)
            )


def keys_of(module: nn.Module) -> list[list]:
    return [[k, list(v.shape)] for k, v in module.state_dict().items()]


def check_keys(mar_mod, vae_mod) -> dict[str, list]:
    with torch.device("meta"):
        official_b = mar_mod.mar_base(diffloss_d=6, diffloss_w=1024)
        ours_b = MAR(MARConfig(**RELEASED_MAR["mar-b"]))
        official_kl = vae_mod.AutoencoderKL(embed_dim=16, ch_mult=(1, 1, 2, 2, 4))
        ours_kl = KLAutoencoder()
    out = {"mar-b": keys_of(official_b), "kl16": keys_of(official_kl)}
    for name, ours in (("mar-b", ours_b), ("kl16", ours_kl)):
        same = sorted((k, tuple(s)) for k, s in out[name]) == sorted((k, tuple(s)) for k, s in keys_of(ours))
        print(f"{name}: {len(out[name])} official keys; bitscale's names and shapes identical: {same}")
        assert same, f"{name}: state-dict keys differ"
    return out


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def compare_small(mar_mod, vae_mod) -> dict[str, torch.Tensor]:
    """Run both implementations; return the tensors the fixture stores (official outputs)."""
    torch.manual_seed(0)
    official = official_mar(mar_mod, SMALL, steps=str(SAMPLE["sampling_steps"])).eval()
    randomise(official, 1)
    ours = MAR(MARConfig(**SMALL)).eval()
    ours.load_state_dict(official.state_dict(), strict=True)

    g = torch.Generator().manual_seed(2)
    b, seq, c = 4, ours.seq_len, ours.config.token_dim
    tokens = torch.randn(b, seq, c, generator=g)
    orders = torch.argsort(torch.rand(b, seq, generator=g), dim=1)
    mask = torch.zeros(b, seq).scatter(1, orders[:, :11], 1.0)
    labels = torch.tensor([0, 3, 9, 5])
    with torch.no_grad():
        z_off = official.forward_mae_decoder(
            official.forward_mae_encoder(tokens, mask, official.class_emb(labels)), mask
        )
        z_ours = ours(tokens, mask, labels)
        null = torch.full((b,), SMALL["class_num"])
        z_null_off = official.forward_mae_decoder(
            official.forward_mae_encoder(tokens, mask, official.fake_latent.repeat(b, 1)), mask
        )
        z_null_ours = ours(tokens, mask, null)
        rows = 8
        x, t, zc = (
            torch.randn(rows, c, generator=g),
            torch.randint(0, 1000, (rows,), generator=g),
            torch.randn(rows, 64, generator=g),
        )
        head_off, head_ours = official.diffloss.net(x, t, zc), ours.diffloss.net(x, t, zc)
        cfg_off = official.diffloss.net.forward_with_cfg(x, t, zc, 2.5)
        half = x[: rows // 2]
        both = ours.diffloss.net(torch.cat([half, half]), t, zc)
        cond, uncond = both[:, :c].chunk(2)
        guided = uncond + 2.5 * (cond - uncond)
        cfg_ours = torch.cat([torch.cat([guided, guided]), both[:, c:]], dim=1)

    s = SAMPLE
    sample_labels = torch.tensor([1, 4, 8])[: s["batch"]]
    torch.manual_seed(s["seed"])
    fixed_orders = torch.argsort(torch.rand(s["batch"], seq), dim=1)  # what random_orders draws first
    official.sample_orders = lambda bsz: fixed_orders
    with torch.no_grad():
        sample_off = official.sample_tokens(
            s["batch"],
            num_iter=s["num_iter"],
            cfg=s["cfg"],
            cfg_schedule=s["cfg_schedule"],
            labels=sample_labels,
            temperature=s["temperature"],
        )
        sample_ours = sample_tokens(
            ours,
            sample_labels,
            torch.Generator().manual_seed(s["seed"]),
            num_iter=s["num_iter"],
            cfg=s["cfg"],
            cfg_schedule=s["cfg_schedule"],
            temperature=s["temperature"],
            sampling_steps=s["sampling_steps"],
        )
    assert torch.equal(random_orders(s["batch"], seq, torch.Generator().manual_seed(s["seed"])), fixed_orders)

    # KL-16: full size (random weights, 32x32 input) in the report; a small one in the fixture.
    report = {
        "z": max_diff(z_off, z_ours),
        "z (null class)": max_diff(z_null_off, z_null_ours),
        "head": max_diff(head_off, head_ours),
        "head cfg": max_diff(cfg_off, cfg_ours),
        "sampled latents": max_diff(sample_off, sample_ours),
    }
    img = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    for label, kw in (("kl16", KL16), ("small vae", SMALL_VAE)):
        torch.manual_seed(3)
        off_vae = official_vae(vae_mod, **kw).eval()
        our_vae = KLAutoencoder(kw["embed_dim"], tuple(kw["ch_mult"]), kw["ch"], kw["resolution"]).eval()
        our_vae.load_state_dict(off_vae.state_dict(), strict=True)
        with torch.no_grad():
            post = off_vae.encode(img)
            mean, std = our_vae.encode(img)
            zlat = torch.randn(post.mean.shape, generator=g)
            dec_off, dec_ours = off_vae.decode(zlat), our_vae.decode(zlat)
        report[f"{label} mean"], report[f"{label} std"] = max_diff(post.mean, mean), max_diff(post.std, std)
        report[f"{label} decode"] = max_diff(dec_off, dec_ours)
        if label == "small vae":
            vae_fixture = {
                **{f"vae.{k}": v for k, v in off_vae.state_dict().items()},
                "vae_in.images": img,
                "vae_in.latents": zlat,
                "vae_out.mean": post.mean,
                "vae_out.std": post.std,
                "vae_out.decoded": dec_off,
            }
    width = max(map(len, report))
    for name, diff in report.items():
        print(f"  {name:<{width}}  max |official - bitscale| = {diff:.3g}  {'ok' if diff <= TOL else 'FAIL'}")
    assert all(d <= TOL for d in report.values()), "parity above tolerance"
    return {
        **{f"model.{k}": v for k, v in official.state_dict().items()},
        "in.tokens": tokens,
        "in.mask": mask,
        "in.labels": labels,
        "out.z": z_off,
        "out.z_null": z_null_off,
        "head_in.x": x,
        "head_in.t": t,
        "head_in.z": zc,
        "out.head": head_off,
        "out.head_cfg": cfg_off,
        "sample_in.labels": sample_labels,
        "out.sample": sample_off,
        **vae_fixture,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--official", type=Path, required=True, help="local copy of https://github.com/LTH14/mar")
    ap.add_argument("--write-fixtures", action="store_true", help=f"(re)write {KEYS_FILE.name} and {OUTPUTS_FILE.name}")
    args = ap.parse_args(argv)
    if not (args.official / "models" / "mar.py").exists():
        print(
            f"error: {args.official} is not a copy of LTH14/mar (no models/mar.py); pass --official PATH",
            file=sys.stderr,
        )
        return 2
    torch.set_num_threads(1)
    mar_mod, vae_mod = import_official(args.official)
    keys = check_keys(mar_mod, vae_mod)
    tensors = compare_small(mar_mod, vae_mod)
    if args.write_fixtures:
        from safetensors.torch import save_file

        FIXTURES.mkdir(parents=True, exist_ok=True)
        KEYS_FILE.write_text(json.dumps(keys, separators=(",", ":")) + "\n")
        meta = {"config": json.dumps(SMALL), "sample": json.dumps(SAMPLE), "vae": json.dumps(SMALL_VAE)}
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(OUTPUTS_FILE), metadata=meta)
        print(f"wrote {KEYS_FILE.relative_to(ROOT)} and {OUTPUTS_FILE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
