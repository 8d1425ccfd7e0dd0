"""MAR: official names and shapes, parity with the official code (golden fixtures), loading, sampling.

The fixtures in tests/data/ were written once by ``tools/mar_parity.py --official <LTH14/mar copy>
--write-fixtures`` (the official key lists of MAR-B and KL-16, and a small randomised model's
official outputs), so these tests re-check parity without the official code.
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from bitscale.harness.errors import BitscaleError
from bitscale.plugins.models.mar import released
from bitscale.plugins.models.mar.diffusion import HeadDiffusion
from bitscale.plugins.models.mar.mar import MAR, RELEASED_MAR, MARConfig
from bitscale.plugins.models.mar.sampling import next_mask_len, sample_tokens
from bitscale.plugins.models.mar.tiny import SIZES, MARTinyFamily
from bitscale.plugins.models.mar.training import masked_count, train_mar
from bitscale.plugins.models.mar.vae import KLAutoencoder

DATA = Path(__file__).parent / "data"
TOL = 1e-5


def _keys(module: torch.nn.Module) -> list[list]:
    return sorted([k, list(v.shape)] for k, v in module.state_dict().items())


def test_released_sizes_have_the_official_keys_and_readme_counts() -> None:
    official = json.loads((DATA / "mar-official-keys.json").read_text())
    with torch.device("meta"):
        assert _keys(MAR(MARConfig(**RELEASED_MAR["mar-b"]))) == sorted(official["mar-b"])
        assert _keys(KLAutoencoder()) == sorted(official["kl16"])
    counts = {s: released.MARFamily().num_params(s, None) for s in RELEASED_MAR}
    assert [round(c / 1e6) for c in counts.values()] == [208, 478, 942]  # README: 208M, 479M, 943M


@pytest.fixture(scope="module")
def fixture():
    path = DATA / "mar-parity.safetensors"
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    return load_file(str(path)), {k: json.loads(v) for k, v in meta.items()}


def _small(fixture) -> MAR:
    tensors, meta = fixture
    mar = MAR(MARConfig(**meta["config"])).eval()
    mar.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    return mar


def _close(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def test_transformer_and_head_match_the_official_outputs(fixture) -> None:
    t, meta = fixture
    mar = _small(fixture)
    null = torch.full_like(t["in.labels"], meta["config"]["class_num"])
    with torch.no_grad():
        assert _close(mar(t["in.tokens"], t["in.mask"], t["in.labels"]), t["out.z"]) <= TOL
        assert _close(mar(t["in.tokens"], t["in.mask"], null), t["out.z_null"]) <= TOL
        assert _close(mar.diffloss.net(t["head_in.x"], t["head_in.t"], t["head_in.z"]), t["out.head"]) <= TOL
    assert t["out.head"].abs().max() > 0.1  # randomised weights: not a comparison of zeros


def test_sampled_latents_match_the_official_sampler_for_a_fixed_seed(fixture) -> None:
    t, meta = fixture
    s = meta["sample"]
    out = sample_tokens(
        _small(fixture),
        t["sample_in.labels"],
        torch.Generator().manual_seed(s["seed"]),
        num_iter=s["num_iter"],
        cfg=s["cfg"],
        cfg_schedule=s["cfg_schedule"],
        temperature=s["temperature"],
        sampling_steps=s["sampling_steps"],
    )
    assert _close(out, t["out.sample"]) <= TOL
    other = sample_tokens(
        _small(fixture),
        t["sample_in.labels"],
        torch.Generator().manual_seed(s["seed"] + 1),
        num_iter=s["num_iter"],
        cfg=s["cfg"],
        sampling_steps=s["sampling_steps"],
    )
    assert _close(other, t["out.sample"]) > 0.1


def test_kl_autoencoder_matches_the_official_one(fixture) -> None:
    t, meta = fixture
    v = meta["vae"]
    vae = KLAutoencoder(v["embed_dim"], tuple(v["ch_mult"]), v["ch"], v["resolution"]).eval()
    vae.load_state_dict({k[4:]: x for k, x in t.items() if k.startswith("vae.")}, strict=True)
    with torch.no_grad():
        mean, std = vae.encode(t["vae_in.images"])
        assert _close(mean, t["vae_out.mean"]) <= TOL and _close(std, t["vae_out.std"]) <= TOL
        assert _close(vae.decode(t["vae_in.latents"]), t["vae_out.decoded"]) <= TOL


def test_mask_schedule_is_cosine_and_ends_with_one_token_per_step() -> None:
    remaining, lens = 16, []
    for step in range(16):
        remaining = next_mask_len(step, 16, 16, remaining)
        lens.append(remaining)
    assert lens[0] == 15 and lens[-2:] == [1, 1] and lens == sorted(lens, reverse=True)
    g = torch.Generator().manual_seed(0)
    counts = [masked_count(16, 0.7, g) for _ in range(300)]
    assert min(counts) >= 12 and max(counts) == 16  # ceil(16 * r) for r in [0.7, 1]


def test_head_process_is_the_cosine_one_respaced() -> None:
    train, gen = HeadDiffusion(), HeadDiffusion(100)
    assert train.num_timesteps == 1000 and float(train.betas.max()) == pytest.approx(0.999)
    assert gen.timestep_map.tolist()[:3] == [0, 10, 20] and gen.timestep_map[-1] == 999


def _released_small(monkeypatch, tmp_path, mutate=None):
    """The released loader on a small MAR and autoencoder written in the official file layout."""
    cfg = MARConfig(
        img_size=8,
        vae_stride=2,
        encoder_embed_dim=32,
        encoder_depth=1,
        encoder_num_heads=1,
        decoder_embed_dim=32,
        decoder_depth=1,
        decoder_num_heads=1,
        vae_embed_dim=16,
        buffer_size=2,
        class_num=10,
        diffloss_d=1,
        diffloss_w=32,
    )
    monkeypatch.setattr(released, "mar_config", lambda size: cfg)
    small_vae = functools.partial(KLAutoencoder, 16, (1, 1), 32, 32)
    monkeypatch.setattr(released, "KLAutoencoder", small_vae)
    torch.manual_seed(0)
    model, ema = MAR(cfg).state_dict(), MAR(cfg).state_dict()
    if mutate:
        mutate(ema)
    folder = tmp_path / "pretrained_models"
    (folder / "mar" / "mar_base").mkdir(parents=True)
    (folder / "vae").mkdir()
    torch.save(
        {"model": model, "model_ema": ema, "epoch": 799, "args": argparse.Namespace(model="mar_base")},
        folder / "mar" / "mar_base" / "checkpoint-last.pth",
    )
    torch.save({"model": small_vae().state_dict() | {"loss.logvar": torch.zeros(())}}, folder / "vae" / "kl16.ckpt")
    monkeypatch.setenv(released.ENV_DIR, str(folder))
    return ema


def test_released_loads_the_ema_weights_strictly_and_samples(monkeypatch, tmp_path) -> None:
    ema = _released_small(monkeypatch, tmp_path)
    model = released.MARFamily().build("mar-b", released.MAROptions(num_iter=2, sampling_steps=3), torch.device("cpu"))
    assert torch.equal(model.module.class_emb.weight, ema["class_emb.weight"])
    assert model.sampler["cfg"] == 2.9 and model.sampler["temperature"] == 1.0
    images = model.sample(torch.tensor([1, 2]), torch.Generator().manual_seed(0))
    assert images.dtype == torch.uint8 and images.shape == (2, 3, 8, 8)


def test_released_errors_name_the_file_and_keys(monkeypatch, tmp_path) -> None:
    _released_small(monkeypatch, tmp_path, mutate=lambda sd: sd.pop("fake_latent"))
    with pytest.raises(BitscaleError, match=r"checkpoint-last.pth .*1 missing: fake_latent"):
        released.MARFamily().build("mar-b", None, torch.device("cpu"))
    monkeypatch.delenv(released.ENV_DIR)
    with pytest.raises(BitscaleError, match="BITSCALE_MAR_CHECKPOINT_DIR"):
        released.MARFamily().build("mar-b", None, torch.device("cpu"))


def test_training_lowers_the_loss_deterministically() -> None:
    cfg = SIZES["d1w64"][0]
    mean, std, labels = torch.randn(64, 4, 4, 4), torch.full((64, 4, 4, 4), 0.1), torch.arange(64) % 10
    a, res = train_mar(cfg, mean, std, labels, 1.0, 30, 0, batch_size=16, desc="test")
    b, _ = train_mar(cfg, mean, std, labels, 1.0, 30, 0, batch_size=16, desc="test")
    assert res.final_loss < res.initial_loss
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_tiny_family_shares_dit_tiny_autoencoder() -> None:
    fam = MARTinyFamily()
    assert fam.artifacts("d1w64", fam.Options()) == ["dit-tiny/vae", "mar-tiny/d1w64"]
    assert [fam.num_params(s, None) for s in fam.sizes] == sorted(fam.num_params(s, None) for s in fam.sizes)


def test_clip_x0_bounds_the_first_step_of_an_inexact_head() -> None:
    # At t = 999 (alpha_bar 2.4e-9) a noise prediction off by 0.01 gives an x0 of ~200, and the first
    # step's mean (0.031 x0 + 0.0016 x_t) lands at ~6, six times the data's std: a trained head never
    # brings such tokens back (mar-tiny's blobs). Clamping x0 keeps that mean within 0.2 of zero.
    process = HeadDiffusion(50)
    x = torch.randn(256, 4, generator=torch.Generator().manual_seed(0))
    t = torch.full((256,), process.num_timesteps - 1)
    out = torch.cat([x + 0.01, torch.zeros_like(x)], dim=1)  # x_t is the noise at t = 999, up to 5e-5 * x0
    free, clipped = process.p_mean_variance(out, x, t), process.p_mean_variance(out, x, t, clip_x0=5.0)
    assert float(free["pred_x0"].abs().min()) > 100 and float(free["mean"].abs().min()) > 5
    assert float(clipped["pred_x0"].abs().max()) == 5.0 and float(clipped["mean"].abs().max()) < 0.2


def test_shipped_tiny_samples_latents_at_the_data_scale() -> None:
    fam = MARTinyFamily()
    model = fam.build("d1w64", fam.Options(num_iter=4, sampling_steps=20), torch.device("cpu"))
    assert model.sampler["clip_x0"] == 5.0
    latents = model.sample_latents(torch.arange(10).repeat(2), torch.Generator().manual_seed(0))
    assert 0.5 < float(latents.std()) < 2.0  # the training latents are scaled to std 1
