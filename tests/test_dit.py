"""DiT: official names/shapes, adaLN-Zero and 3-channel CFG, the official sampler's schedule, families, loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from bitscale.data import digits
from bitscale.harness.errors import BitscaleError
from bitscale.plugins.models.dit import DiTFamily, DiTTinyFamily
from bitscale.plugins.models.dit import released as released_mod
from bitscale.plugins.models.dit.diffusion import Diffusion, space_timesteps
from bitscale.plugins.models.dit.dit import RELEASED_DIT, DiT, DiTConfig, sincos_pos_embed_2d
from bitscale.plugins.models.dit.model import DiTModel
from bitscale.plugins.models.dit.tiny import DiTTinyOptions
from bitscale.plugins.models.dit.training import train_dit
from bitscale.plugins.models.dit.vae import TINY_VAE_CONFIG, build_vae, load_vae

KEYS_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference" / "official-keys"

# The tiny zoo's layout: 4x4x4 latents, patch 1, 16 tokens.
SMALL = DiTConfig(input_size=4, patch_size=1, in_channels=4, hidden_size=64, depth=2, num_heads=2, num_classes=10)


def _small_dit(seed: int = 0) -> DiT:
    """A random DiT whose zero-initialised adaLN and output layers are filled (else the output is 0)."""
    torch.manual_seed(seed)
    dit = DiT(SMALL)
    with torch.no_grad():
        for block in dit.blocks:
            block.adaLN_modulation[-1].weight.normal_(0, 0.05)
        dit.final_layer.adaLN_modulation[-1].weight.normal_(0, 0.05)
        dit.final_layer.linear.weight.normal_(0, 0.05)
    return dit.eval()


def _read_tsv(name: str) -> list[tuple[str, str, str]]:
    path = KEYS_DIR / name
    if not path.exists():
        pytest.skip(f"official key list {path} not present (it lives in the shared reference folder)")
    return [tuple(line.split("\t")) for line in path.read_text().splitlines() if line.strip()]


# ----------------------------------------------------------------------------- architecture


def test_xl2_matches_official_keys_and_counts() -> None:
    with torch.device("meta"):
        dit = DiT(DiTConfig(**RELEASED_DIT["xl-2"]))
    assert [(k, str(tuple(v.shape)), str(v.dtype)) for k, v in dit.state_dict().items()] == _read_tsv("dit-xl-2.tsv")
    fam = DiTFamily()
    assert fam.num_params("xl-2", fam.Options()) == 675_129_632  # every parameter, pos_embed included
    assert sum(p.numel() for p in dit.parameters() if p.requires_grad) == 674_834_720


def test_tiny_sizes_span_parameters() -> None:
    fam = DiTTinyFamily()
    counts = [fam.num_params(s, fam.Options()) for s in fam.sizes]
    assert len(counts) >= 3 and counts == sorted(counts) and counts[-1] >= 4 * counts[0]


def test_pos_embed_is_fixed_sincos_in_the_state_dict() -> None:
    dit = DiT(SMALL)
    assert "pos_embed" in dit.state_dict() and not dit.pos_embed.requires_grad
    table = sincos_pos_embed_2d(64, 4)
    assert torch.equal(dit.pos_embed[0], table.float())
    # token 0 sits at (row 0, col 0): every sin is 0 and every cos is 1
    assert torch.equal(table[0], torch.cat([torch.zeros(16), torch.ones(16)]).repeat(2).double())
    # the first half encodes the column: tokens 0 and 4 (next row, same column) share it
    assert torch.equal(table[0, :32], table[4, :32]) and not torch.equal(table[0, 32:], table[4, 32:])


def test_output_has_twice_the_channels_and_adaln_zero_starts_at_zero() -> None:
    x, t, y = torch.randn(3, 4, 4, 4), torch.tensor([0, 10, 999]), torch.tensor([1, 2, 10])
    assert torch.equal(DiT(SMALL)(x, t, y), torch.zeros(3, 8, 4, 4))  # zero-initialised output layers
    assert _small_dit()(x, t, y).shape == (3, 8, 4, 4)
    xl2 = DiT(DiTConfig(input_size=8, patch_size=2, hidden_size=64, depth=1, num_heads=2, num_classes=10))
    assert xl2(torch.randn(1, 4, 8, 8), t[:1], y[:1]).shape == (1, 8, 8, 8)  # unpatchify with patch 2


def test_cfg_guides_only_the_first_three_channels() -> None:
    dit = _small_dit()
    x, t = torch.randn(2, 4, 4, 4), torch.tensor([500, 500])
    y = torch.tensor([3, 10])
    cond, uncond = dit(x[:1], t[:1], y[:1]), dit(x[:1], t[:1], y[1:])
    out = dit.forward_with_cfg(torch.cat([x[:1], x[:1]]), t, y, cfg_scale=4.0)
    assert torch.allclose(out[0, :3], uncond[0, :3] + 4.0 * (cond[0, :3] - uncond[0, :3]), atol=1e-5)
    assert torch.allclose(out[0, 3:], cond[0, 3:], atol=1e-6)  # 4th eps channel and the variance: unguided
    assert torch.allclose(out[0, :3], out[1, :3])
    # the sampler's guided model function is the first half of forward_with_cfg
    model = DiTModel(dit, nn.Identity(), "digits16", {"steps": 2}, 1.0)
    fn = model.model_fn(torch.tensor([3]), cfg=4.0)
    assert torch.allclose(fn(x[:1], t[:1]), out[:1], atol=1e-6)


# ----------------------------------------------------------------------------- the official sampler


def test_respacing_is_the_official_one() -> None:
    steps = space_timesteps(1000, 250)
    assert len(steps) == 250 and steps[:4] == [0, 4, 8, 12] and steps[-1] == 999
    d = Diffusion(250)
    full = Diffusion()
    # respaced betas reproduce the kept alphas_cumprod of the 1000-step process
    assert torch.allclose(d.alphas_cumprod, full.alphas_cumprod[d.timestep_map], rtol=0, atol=1e-12)
    assert float(full.betas[0]) == pytest.approx(1e-4) and float(full.betas[-1]) == pytest.approx(0.02)


def test_samplers_are_seeded_and_calls_use_original_timesteps() -> None:
    seen: list[int] = []

    def fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen.append(int(t[0]))
        return torch.cat([0.1 * x, torch.zeros_like(x)], dim=1)

    d = Diffusion(5)
    noise = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    a = d.p_sample_loop(fn, noise, torch.Generator().manual_seed(1))
    b = d.p_sample_loop(fn, noise, torch.Generator().manual_seed(1))
    c = d.p_sample_loop(fn, noise, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert seen[:5] == [999, 749, 500, 250, 0]
    assert torch.equal(d.ddim_sample_loop(fn, noise), d.ddim_sample_loop(fn, noise))  # eta 0: deterministic


def test_min_snr_weighting_only_down_weights_low_noise_steps() -> None:
    d = Diffusion()
    g = torch.Generator().manual_seed(0)
    x0, noise, out = (torch.randn(2, c, 4, 4, generator=g) for c in (4, 4, 8))
    for step, lowered in ((10, True), (900, False)):  # SNR(10) >> 5 > SNR(900)
        t = torch.full((2,), step)
        x_t = d.q_sample(x0, t, noise)
        _, plain = d.training_loss(out, x0, x_t, t, noise)
        total, _ = d.training_loss(out, x0, x_t, t, noise, snr_gamma=5.0)
        total_plain, _ = d.training_loss(out, x0, x_t, t, noise)
        assert (total < total_plain) if lowered else torch.isclose(total, total_plain)
        assert plain > 0


# ----------------------------------------------------------------------------- contract shapes


def test_forward_calibration_and_sample_shapes() -> None:
    torch.manual_seed(0)
    vae = build_vae(TINY_VAE_CONFIG).eval()
    dit = _small_dit()
    pool = torch.randn(20, 4, 4, 4), torch.randint(10, (20,))
    model = DiTModel(
        dit,
        vae,
        "digits16",
        {"sampler": "ddim", "steps": 3, "cfg": 1.5},
        0.5,
        calibration_latents=lambda: pool,
        batch_size=5,
    )
    batches = model.calibration_batches(2, torch.Generator().manual_seed(0))
    again = model.calibration_batches(2, torch.Generator().manual_seed(0))
    assert all(torch.equal(a["x_t"], b["x_t"]) for a, b in zip(batches, again))
    b = batches[0]
    assert b["x_t"].shape == (5, 4, 4, 4) and b["t"].shape == (5,) and int(b["t"].max()) < 1000
    assert model.forward_batch(b).shape == (5, 4, 4, 4)  # the eps half only
    for sampler in ("ddim", "ddpm"):
        model.sampler["sampler"] = sampler
        images = model.sample(torch.tensor([1, 2]), torch.Generator().manual_seed(0))
        assert images.dtype == torch.uint8 and images.shape == (2, 3, digits.SIZE, digits.SIZE)
    assert model.num_params() == sum(p.numel() for p in dit.parameters())  # VAE not counted
    names = set(model.quant_layers())
    assert "blocks.0.attn.qkv" in names and "blocks.1.adaLN_modulation.1" in names
    assert not any(n.startswith(("final_layer", "t_embedder", "x_embedder", "y_embedder")) for n in names)


# ----------------------------------------------------------------------------- training


def test_training_lowers_the_loss() -> None:
    gen = torch.Generator().manual_seed(0)
    mean = torch.randn(10, 4, 4, 4, generator=gen).sign()  # ten fixed "images"
    _, result = train_dit(SMALL, mean, torch.zeros_like(mean), torch.arange(10), 1.0, steps=60, seed=0, batch_size=16)
    assert result.final_loss < result.initial_loss


@pytest.mark.slow
def test_tiny_family_trains_caches_and_builds(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("BITSCALE_CACHE", str(tmp_path))
    fam, opts = DiTTinyFamily(), DiTTinyOptions(steps=20, vae_steps=3, sampling_steps=3)
    size = fam.sizes[0]
    manifest = fam.train(size, opts)
    assert {"config", "data_hash", "seed", "steps", "final_loss", "seconds"} <= set(manifest)
    assert manifest["data_hash"] == digits.data_hash()
    vae_manifest = json.loads((tmp_path / "dit-tiny" / "vae-s3.json").read_text())  # step overrides: own files
    assert vae_manifest["latent_scale"] > 0 and (tmp_path / "dit-tiny" / f"{size}-s20-vae-s3.png").exists()
    assert fam.train(size, opts) == manifest  # cached: not retrained
    model = fam.build(size, opts, torch.device("cpu"))
    images = model.sample(torch.tensor([3, 4]), torch.Generator().manual_seed(0))
    assert images.shape == (2, 3, 16, 16)
    (batch,) = model.calibration_batches(1, torch.Generator().manual_seed(0))
    assert model.forward_batch(batch).shape == (32, 4, 4, 4)


# ----------------------------------------------------------------------------- released checkpoints


def test_released_needs_local_files(monkeypatch) -> None:
    monkeypatch.delenv(released_mod.ENV_DIR, raising=False)
    with pytest.raises(BitscaleError, match="checkpoint"):
        DiTFamily().build("xl-2", released_mod.DiTOptions(), torch.device("cpu"))


def test_released_loads_official_files_strictly(tmp_path, monkeypatch) -> None:
    # The real files are gigabytes; the same loading code runs on small stand-ins with official names.
    monkeypatch.setattr(released_mod, "dit_config", lambda size, image_size: SMALL)
    dit = _small_dit()
    torch.save(dit.state_dict(), tmp_path / "DiT-XL-2-256x256.pt")  # a raw state dict, as released
    torch.manual_seed(1)
    vae = build_vae(TINY_VAE_CONFIG)
    # pre-0.14 diffusers attention names, as in sd-vae-ft-ema's files
    old = {
        k.replace(".to_q.", ".query.")
        .replace(".to_k.", ".key.")
        .replace(".to_v.", ".value.")
        .replace(".to_out.0.", ".proj_attn."): v.contiguous()
        for k, v in vae.state_dict().items()
    }
    vae_dir = tmp_path / "vae"
    vae_dir.mkdir()
    save_file(old, str(vae_dir / "diffusion_pytorch_model.safetensors"))
    (vae_dir / "config.json").write_text(json.dumps(TINY_VAE_CONFIG))
    loaded = load_vae(vae_dir / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in vae.state_dict().items())

    opts = released_mod.DiTOptions(vae_path=str(vae_dir / "diffusion_pytorch_model.safetensors"))
    monkeypatch.setenv(released_mod.ENV_DIR, str(tmp_path))
    model = DiTFamily().build("xl-2", opts, torch.device("cpu"))
    assert model.sampler == {"sampler": "ddpm", "steps": 250, "cfg": 1.5, "image_size": 256}
    assert not model.module.pos_embed.requires_grad
    batch = {"x_t": torch.randn(2, 4, 4, 4), "t": torch.tensor([5, 600]), "labels": torch.tensor([0, 10])}
    with torch.no_grad():
        assert torch.equal(model.forward_batch(batch), dit(batch["x_t"], batch["t"], batch["labels"])[:, :4])

    torch.save({k: v for k, v in dit.state_dict().items() if k != "pos_embed"}, tmp_path / "DiT-XL-2-256x256.pt")
    with pytest.raises(BitscaleError, match=r"DiT-XL-2-256x256\.pt.*missing: pos_embed"):
        DiTFamily().build("xl-2", opts, torch.device("cpu"))
