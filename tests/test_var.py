"""VAR: official names/shapes, sampling equals teacher forcing, families, strict loading, training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from bitscale.data import digits
from bitscale.harness.errors import BitscaleError
from bitscale.plugins.models.var import VarFamily, VarModel, VarOptions, VarTinyFamily, VarTinyOptions
from bitscale.plugins.models.var.images import digits_source, image_folder_source
from bitscale.plugins.models.var.released import checkpoint_paths, load_released
from bitscale.plugins.models.var.tiny import TINY_VAE, tiny_var_config
from bitscale.plugins.models.var.transformer import VAR, VARConfig, official_var_config
from bitscale.plugins.models.var.vqvae import VQVAE, VQVAEConfig

KEYS_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference" / "official-keys"

SMALL_VAE = VQVAEConfig(vocab_size=64, Cvae=8, ch=32, ch_mult=(1, 2, 2), num_res_blocks=1, patch_nums=(1, 2, 4))
SMALL_VAR = VARConfig(depth=2, embed_dim=32, num_heads=2, vocab_size=64, Cvae=8, num_classes=10, patch_nums=(1, 2, 4))


def _small(seed: int = 0) -> tuple[VAR, VQVAE]:
    """Random small models whose blocks actually matter (upstream init makes them near-identity)."""
    torch.manual_seed(seed)
    var, vae = VAR(SMALL_VAR), VQVAE(SMALL_VAE)
    with torch.no_grad():
        for block in var.blocks:
            block.ada_lin[-1].weight.normal_(0, 0.2)
        var.head.weight.normal_(0, 0.3)
    return var.eval(), vae.eval()


def _read_tsv(name: str) -> list[tuple[str, str, str]]:
    path = KEYS_DIR / name
    if not path.exists():
        pytest.skip(f"official key list {path} not present (it lives in the shared reference folder)")
    return [tuple(line.rstrip("\n").split("\t")) for line in path.read_text().splitlines() if line.strip()]


def _keys(module: nn.Module) -> list[tuple[str, str, str]]:
    return [(k, str(tuple(v.shape)), str(v.dtype)) for k, v in module.state_dict().items()]


# ----------------------------------------------------------------------------- architecture


def test_d16_transformer_matches_official_keys() -> None:
    with torch.device("meta"):
        var = VAR(official_var_config(16), init=False)
    assert _keys(var) == _read_tsv("var-d16.tsv")


def test_vqvae_matches_official_keys() -> None:
    with torch.device("meta"):
        vae = VQVAE(VQVAEConfig())
    assert _keys(vae) == _read_tsv("var-vqvae.tsv")


def test_released_param_counts() -> None:
    fam = VarFamily()
    counts = {s: fam.num_params(s, VarOptions()) for s in fam.sizes}
    assert counts == {"d16": 310_283_520, "d20": 600_917_136, "d24": 1_033_399_360, "d30": 2_010_020_356}
    with torch.device("meta"):
        vae = VQVAE(VQVAEConfig())
    assert sum(p.numel() for p in vae.parameters()) == 108_948_355


def test_tiny_sizes_span_parameters() -> None:
    fam = VarTinyFamily()
    counts = [fam.num_params(s, VarTinyOptions()) for s in fam.sizes]
    assert len(counts) >= 3 and counts == sorted(counts) and counts[-1] >= 4 * counts[0]
    assert TINY_VAE.image_size == digits.SIZE


def test_quant_layers_exclude_head_and_embeddings() -> None:
    var, vae = _small()
    model = VarModel(var, vae, "digits16", {"cfg": 0.0}, None)
    names = set(model.quant_layers())
    assert names == {
        f"blocks.{i}.{m}" for i in range(2) for m in ("attn.mat_qkv", "attn.proj", "ffn.fc1", "ffn.fc2", "ada_lin.1")
    }
    assert model.num_params() == sum(p.numel() for p in var.parameters())  # the VQ-VAE is not counted


# ----------------------------------------------------------------------------- sampling


@pytest.mark.parametrize("use_kv_cache", [True, False])
def test_greedy_sampling_equals_teacher_forced_argmax(use_kv_cache: bool) -> None:
    var, vae = _small()
    labels = torch.arange(6) % 10
    _, tokens = var.autoregressive_infer_cfg(
        labels, vae.quantize, torch.Generator().manual_seed(0), cfg=0.0, top_k=1, use_kv_cache=use_kv_cache
    )
    logits = var(labels, vae.quantize.idx_to_var_input(tokens))
    assert logits.shape == (6, SMALL_VAR.L, SMALL_VAR.vocab_size)
    assert torch.equal(logits.argmax(-1), torch.cat(tokens, dim=1))


def test_sampling_is_deterministic_for_a_seed() -> None:
    var, vae = _small()
    model = VarModel(var, vae, "digits16", {"cfg": 1.5, "top_k": 20, "top_p": 0.9}, None)
    labels = torch.arange(8) % 10
    a = model.sample(labels, torch.Generator().manual_seed(1))
    b = model.sample(labels, torch.Generator().manual_seed(1))
    c = model.sample(labels, torch.Generator().manual_seed(2))
    assert a.dtype == torch.uint8 and a.shape == (8, 3, 16, 16)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_kv_cache_is_cleared_after_sampling() -> None:
    var, vae = _small()
    var.autoregressive_infer_cfg(torch.zeros(2, dtype=torch.long), vae.quantize, None, cfg=1.0)
    assert all(not b.attn.caching and b.attn.cached_k is None for b in var.blocks)


def test_hooks_on_quant_layers_see_sampling_and_forward() -> None:
    # Quantizers capture activations with forward hooks: every Linear must be called as a module.
    var, vae = _small()
    model = VarModel(var, vae, "digits16", {"cfg": 1.5, "top_k": 0, "top_p": 0.0}, digits_source())
    seen: set[str] = set()
    for name, layer in model.quant_layers().items():
        layer.register_forward_hook(lambda m, i, o, name=name: seen.add(name))
    model.forward_batch(model.calibration_batches(1, torch.Generator().manual_seed(0))[0])
    assert seen == set(model.quant_layers())
    seen.clear()
    model.sample(torch.tensor([3]), torch.Generator().manual_seed(0))
    assert seen == set(model.quant_layers())


def test_top_k_top_p_filtering() -> None:
    from bitscale.plugins.models.var.sampling import sample_top_k_top_p

    logits = torch.tensor([[[0.0, 5.0, 4.9, -1.0]]]).expand(1, 500, 4)
    g = torch.Generator().manual_seed(0)
    assert set(sample_top_k_top_p(logits, top_k=2, top_p=0.0, generator=g).unique().tolist()) == {1, 2}
    # top-p 0.5 keeps only the single most likely token (its mass is already above 0.5).
    assert set(sample_top_k_top_p(logits, top_k=0, top_p=0.5, generator=g).unique().tolist()) == {1}


# ----------------------------------------------------------------------------- calibration


def test_calibration_batches_and_forward_shapes() -> None:
    var, vae = _small()
    model = VarModel(var, vae, "digits16", {"cfg": 0.0}, digits_source(), calibration_batch_size=5)
    batches = model.calibration_batches(3, torch.Generator().manual_seed(0))
    assert len(batches) == 3
    b = batches[0]
    assert b.labels.shape == (5,) and b.labels.dtype == torch.int64
    assert b.x_BLCv.shape == (5, SMALL_VAR.L - 1, SMALL_VAE.Cvae)
    assert b.target.shape == (5, SMALL_VAR.L) and int(b.target.max()) < SMALL_VAE.vocab_size
    again = model.calibration_batches(3, torch.Generator().manual_seed(0))
    assert all(torch.equal(x.target, y.target) for x, y in zip(batches, again))
    model.module.train()  # label dropout must stay off in forward_batch, even in training mode
    out = [model.forward_batch(b) for _ in range(2)]
    assert out[0].shape == (5, SMALL_VAR.L, SMALL_VAE.vocab_size) and torch.equal(out[0], out[1])


def test_label_dropout_only_in_training() -> None:
    var, _ = _small()
    x = torch.randn(64, SMALL_VAR.L - 1, SMALL_VAR.Cvae)
    labels = torch.zeros(64, dtype=torch.long)
    var.eval()
    assert torch.equal(var(labels, x), var(labels, x))
    var.train()
    torch.manual_seed(0)
    assert not torch.equal(var(labels, x), var(labels, x, cond_drop_rate=0.0))


def test_image_folder_source(tmp_path: Path) -> None:
    from PIL import Image

    for cls in ("n01", "n02"):
        (tmp_path / cls).mkdir()
        Image.new("RGB", (40, 30), (255, 0, 0)).save(tmp_path / cls / "a.png")
    images, labels = image_folder_source(tmp_path, 16)(4, torch.Generator().manual_seed(0))
    assert images.shape == (4, 3, 16, 16) and set(labels.tolist()) <= {0, 1}
    assert images.min() >= -1 and images.max() <= 1 and images[:, 0].mean() > 0.9
    with pytest.raises(BitscaleError, match="not found"):
        image_folder_source(tmp_path / "nope", 16)


# ----------------------------------------------------------------------------- released loading


def test_released_loading_is_strict(tmp_path: Path) -> None:
    var, vae = _small()
    torch.save({"model": var.state_dict()}, tmp_path / "var_d16.pth")
    save_file(vae.state_dict(), str(tmp_path / "vae.safetensors"))
    got_var, got_vae = load_released(
        SMALL_VAR, SMALL_VAE, tmp_path / "var_d16.pth", tmp_path / "vae.safetensors", torch.device("cpu")
    )
    assert all(torch.equal(a, b) for a, b in zip(got_var.state_dict().values(), var.state_dict().values()))
    assert all(torch.equal(a, b) for a, b in zip(got_vae.state_dict().values(), vae.state_dict().values()))
    labels = torch.arange(3)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.equal(
        VarModel(var, vae, "x", {"cfg": 1.5, "top_k": 10}, None).sample(labels, g()),
        VarModel(got_var, got_vae, "x", {"cfg": 1.5, "top_k": 10}, None).sample(labels, g()),
    )

    # A checkpoint of another size: the error names the file and the mismatching keys.
    deeper = VAR(VARConfig(**{**SMALL_VAR.to_dict(), "depth": 3}))
    torch.save(deeper.state_dict(), tmp_path / "other.pth")
    with pytest.raises(BitscaleError) as err:
        load_released(SMALL_VAR, SMALL_VAE, tmp_path / "other.pth", tmp_path / "vae.safetensors", torch.device("cpu"))
    assert "other.pth" in str(err.value) and "unexpected: blocks.2." in str(err.value)
    wider = VAR(VARConfig(**{**SMALL_VAR.to_dict(), "embed_dim": 64}))
    torch.save(wider.state_dict(), tmp_path / "wide.pth")
    with pytest.raises(BitscaleError, match=r"pos_start: checkpoint \(1, 1, 64\) vs model \(1, 1, 32\)"):
        load_released(SMALL_VAR, SMALL_VAE, tmp_path / "wide.pth", tmp_path / "vae.safetensors", torch.device("cpu"))


def test_released_checkpoint_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BITSCALE_VAR_CHECKPOINT_DIR", raising=False)
    with pytest.raises(BitscaleError, match="BITSCALE_VAR_CHECKPOINT_DIR"):
        checkpoint_paths("d16", VarOptions())
    monkeypatch.setenv("BITSCALE_VAR_CHECKPOINT_DIR", str(tmp_path))
    assert checkpoint_paths("d20", VarOptions()) == (tmp_path / "var_d20.pth", tmp_path / "vae_ch160v4096z32.pth")
    opts = VarOptions(checkpoint="/ckpt/var_{size}.pth")
    assert checkpoint_paths("d24", opts)[0] == Path("/ckpt/var_d24.pth")
    with pytest.raises(BitscaleError, match=r"not found: .*var_d16\.pth"):
        VarFamily().build("d16", VarOptions(), torch.device("cpu"))
    monkeypatch.delenv("BITSCALE_IMAGENET_TRAIN", raising=False)
    meta = VarFamily().build("d16", VarOptions(), torch.device("meta"))
    assert meta.dataset == "imagenet256" and meta.sampler == {"cfg": 1.5, "top_k": 900, "top_p": 0.96}
    with pytest.raises(BitscaleError, match="BITSCALE_IMAGENET_TRAIN"):
        meta.calibration_batches(1, torch.Generator())


def test_official_config_rules() -> None:
    cfg = official_var_config(20)
    assert (cfg.embed_dim, cfg.num_heads, cfg.L, cfg.vocab_size, cfg.Cvae) == (1280, 20, 680, 4096, 32)
    assert tiny_var_config("d4").num_heads == 4


# ----------------------------------------------------------------------------- training


@pytest.mark.slow
def test_tiny_training_lowers_loss_and_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BITSCALE_CACHE", str(tmp_path))
    fam = VarTinyFamily()
    opts = VarTinyOptions(vae_steps=15, steps=25)
    manifest = fam.train("d2", opts)
    assert manifest["final_loss"] < manifest["first_loss"]
    assert manifest["data_hash"] == digits.data_hash() and manifest["steps"] == 25 and manifest["seed"] == 0
    vae_manifest = (tmp_path / "var-tiny" / "vqvae-s15.json").read_text()
    assert '"final_loss"' in vae_manifest
    assert (tmp_path / "var-tiny" / "d2-s25-v15-samples.png").exists()
    assert (tmp_path / "var-tiny" / "vqvae-s15-recon.png").exists()
    assert fam.train("d2", opts) == manifest  # cached: not retrained
    model = fam.build("d2", opts, torch.device("cpu"))
    assert model.num_params() == fam.num_params("d2", opts)
    images = model.sample(torch.arange(4), torch.Generator().manual_seed(0))
    assert images.shape == (4, 3, 16, 16) and images.dtype == torch.uint8
