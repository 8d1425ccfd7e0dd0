"""LlamaGen: official names/shapes, KV-cached generation equals teacher forcing, sampling, families, loading."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from bitscale.data import digits
from bitscale.harness.errors import BitscaleError
from bitscale.plugins.models.llamagen import LlamaGenFamily, LlamaGenTinyFamily
from bitscale.plugins.models.llamagen import released as released_mod
from bitscale.plugins.models.llamagen.generate import filter_logits, generate
from bitscale.plugins.models.llamagen.gpt import GPT, RELEASED_GPT, GPTConfig
from bitscale.plugins.models.llamagen.model import LlamaGenModel
from bitscale.plugins.models.llamagen.rope import rope_2d_table
from bitscale.plugins.models.llamagen.tiny import TOKENIZER, LlamaGenTinyOptions, encode_split
from bitscale.plugins.models.llamagen.training import train_gpt
from bitscale.plugins.models.llamagen.vq import VQConfig, VQModel

KEYS_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference" / "official-keys"

SMALL = GPTConfig(
    dim=128,
    n_layer=2,
    n_head=2,
    vocab_size=64,
    num_classes=10,
    block_size=16,
    multiple_of=32,
    token_dropout_p=0.0,
    resid_dropout_p=0.0,
    ffn_dropout_p=0.0,
)


def _small_gpt(seed: int = 0) -> GPT:
    """A random GPT whose output head is not zero (the official init zeroes it: all logits would tie)."""
    torch.manual_seed(seed)
    gpt = GPT(SMALL)
    with torch.no_grad():
        gpt.output.weight.normal_(0, 0.5)
    return gpt.eval()


def _read_tsv(name: str) -> list[tuple[str, str, str]]:
    path = KEYS_DIR / name
    if not path.exists():
        pytest.skip(f"official key list {path} not present (it lives in the shared reference folder)")
    return [tuple(line.split("\t")) for line in path.read_text().splitlines() if line.strip()]


def _keys(module: nn.Module) -> list[tuple[str, str, str]]:
    return [(k, str(tuple(v.shape)), str(v.dtype)) for k, v in module.state_dict().items()]


# ----------------------------------------------------------------------------- architecture


def test_gpt_b_matches_official_keys() -> None:
    with torch.device("meta"):
        gpt = GPT(GPTConfig(**RELEASED_GPT["gpt-b"]))
    assert _keys(gpt) == _read_tsv("llamagen-gpt-b.tsv")


def test_vq16_matches_official_keys() -> None:
    with torch.device("meta"):
        vq = VQModel(VQConfig())
    assert _keys(vq) == _read_tsv("llamagen-vq16.tsv")


def test_released_param_counts() -> None:
    fam = LlamaGenFamily()
    counts = {s: fam.num_params(s, fam.Options()) for s in fam.sizes}
    assert counts == {"gpt-b": 110_888_448, "gpt-l": 342_910_976, "gpt-xl": 774_699_520}
    with torch.device("meta"):
        assert sum(p.numel() for p in VQModel(VQConfig()).parameters()) == 71_883_403


def test_tiny_sizes_span_parameters_with_head_dim_64() -> None:
    fam = LlamaGenTinyFamily()
    counts = [fam.num_params(s, fam.Options()) for s in fam.sizes]
    assert len(counts) >= 3 and counts == sorted(counts) and counts[-1] >= 4 * counts[0]
    from bitscale.plugins.models.llamagen.tiny import SIZES

    assert all(cfg.head_dim == 64 for cfg, _ in SIZES.values())


def test_class_token_rope_rows_are_zero_and_ffn_rounding() -> None:
    table = rope_2d_table(grid=4, head_dim=64, cls_token_num=1)
    assert table.shape == (17, 32, 2) and table[0].abs().sum() == 0 and table[1:].abs().sum() > 0
    assert GPTConfig(dim=768, n_layer=1, n_head=12).ffn_hidden == 2048
    assert GPTConfig(dim=64, n_layer=1, n_head=1, multiple_of=32).ffn_hidden == 192


def test_quant_layers_exclude_head_and_embeddings() -> None:
    model = LlamaGenModel(_small_gpt(), VQModel(TOKENIZER), "digits16", {})
    names = set(model.quant_layers())
    assert "output" not in names and not any("embedding" in n for n in names)
    assert "layers.0.attention.wqkv" in names and "layers.1.feed_forward.w2" in names


# ----------------------------------------------------------------------------- generation


def test_kv_cache_is_not_in_the_state_dict() -> None:
    gpt = _small_gpt()
    keys = set(gpt.state_dict())
    gpt.setup_caches(2, 17)
    assert set(gpt.state_dict()) == keys and not any("kv_cache" in k or "freqs_cis" in k for k in keys)
    gpt.clear_caches()
    generate(gpt, torch.tensor([1, 2]), top_k=1)
    assert set(gpt.state_dict()) == keys
    gpt(torch.zeros(1, 3, dtype=torch.long), torch.tensor([0]))  # teacher forcing works after generating


@pytest.mark.parametrize("cfg", [1.0, 3.0])
def test_greedy_cached_generation_equals_teacher_forced_argmax(cfg: float) -> None:
    gpt = _small_gpt()
    labels = torch.tensor([0, 3, 7, 9])
    tokens = generate(gpt, labels, cfg=cfg, top_k=1, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = gpt(tokens[:, :-1], labels)
        if cfg > 1:  # the same guidance, applied to teacher-forced logits
            uncond = gpt(tokens[:, :-1], torch.full_like(labels, SMALL.num_classes))
            logits = uncond + (logits - uncond) * cfg
    assert logits.shape == (4, SMALL.block_size, SMALL.vocab_size)
    assert torch.equal(logits.argmax(-1), tokens)


def test_uncached_generation_gives_the_same_tokens() -> None:
    gpt = _small_gpt()
    labels = torch.tensor([2, 5])
    kw = dict(cfg=2.0, top_k=1)
    assert torch.equal(generate(gpt, labels, use_cache=True, **kw), generate(gpt, labels, use_cache=False, **kw))


def test_seeded_sampling_is_deterministic() -> None:
    gpt = _small_gpt()
    labels = torch.arange(6) % 10

    def run(seed: int) -> torch.Tensor:
        return generate(
            gpt, labels, cfg=2.0, top_k=20, top_p=0.9, temperature=1.2, generator=torch.Generator().manual_seed(seed)
        )

    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_top_k_and_top_p_filtering() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.2, 0.15, 0.1, 0.05]]))
    kept = lambda out: torch.isfinite(out[0]).nonzero().flatten().tolist()  # noqa: E731
    assert kept(filter_logits(logits, top_k=2)) == [0, 1]
    # Tokens are kept until the cumulative probability exceeds top_p, the crossing one included.
    assert kept(filter_logits(logits, top_p=0.6)) == [0, 1]
    assert kept(filter_logits(logits, top_p=0.4)) == [0]
    assert kept(filter_logits(logits, top_k=3, top_p=0.99)) == [0, 1, 2]
    assert kept(filter_logits(logits)) == [0, 1, 2, 3, 4]


# ----------------------------------------------------------------------------- contract shapes


def test_forward_calibration_and_sample_shapes() -> None:
    torch.manual_seed(0)
    vq = VQModel(TOKENIZER).eval()
    gpt = GPT(GPTConfig(**{**SMALL.to_dict(), "vocab_size": TOKENIZER.codebook_size}))
    model = LlamaGenModel(
        gpt.eval(),
        vq,
        "digits16",
        {"cfg": 2.0, "top_k": 0, "top_p": 1.0},
        calibration_tokens=lambda: encode_split(vq, "train"),
        batch_size=5,
    )
    batches = model.calibration_batches(3, torch.Generator().manual_seed(0))
    again = model.calibration_batches(3, torch.Generator().manual_seed(0))
    assert len(batches) == 3 and all(torch.equal(a["tokens"], b["tokens"]) for a, b in zip(batches, again))
    assert batches[0]["tokens"].shape == (5, 16) and batches[0]["labels"].shape == (5,)
    assert model.forward_batch(batches[0]).shape == (5, 16, TOKENIZER.codebook_size)
    images = model.sample(torch.tensor([1, 2]), torch.Generator().manual_seed(0))
    assert images.dtype == torch.uint8 and images.shape == (2, 3, digits.SIZE, digits.SIZE)
    assert model.num_params() == sum(p.numel() for p in gpt.parameters())  # tokenizer not counted


def test_self_generated_calibration_without_a_token_source() -> None:
    model = LlamaGenModel(_small_gpt(), VQModel(TOKENIZER), "imagenet256", {"cfg": 1.5}, batch_size=3)
    (batch,) = model.calibration_batches(1, torch.Generator().manual_seed(0))
    assert batch["tokens"].shape == (3, 16) and int(batch["labels"].max()) < 10


# ----------------------------------------------------------------------------- training


def test_training_lowers_the_loss() -> None:
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(10, (64,), generator=gen)
    tokens = (labels[:, None] * 3 + torch.arange(16)) % SMALL.vocab_size  # learnable: depends on label and position
    _, result = train_gpt(SMALL, tokens, labels, steps=40, seed=0, batch_size=16)
    assert math.isclose(result.initial_loss, math.log(SMALL.vocab_size), rel_tol=1e-4)  # zero-init head
    assert result.final_loss < 0.7 * result.initial_loss


@pytest.mark.slow
def test_tiny_family_trains_caches_and_builds(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("BITSCALE_CACHE", str(tmp_path))
    fam, opts = LlamaGenTinyFamily(), LlamaGenTinyOptions(steps=30, tokenizer_steps=3)
    size = fam.sizes[0]
    manifest = fam.train(size, opts)
    assert {"config", "data_hash", "seed", "steps", "final_loss", "seconds"} <= set(manifest)
    assert manifest["data_hash"] == digits.data_hash() and manifest["steps"] == 30
    assert manifest["final_loss"] < manifest["initial_loss"]
    # step overrides get their own files, so the default zoo in the same cache is left alone
    assert (tmp_path / "llamagen-tiny" / f"{size}-s30-vq-s3.png").exists()
    cached = tmp_path / "llamagen-tiny"
    assert (cached / "vq-s3.json").exists() and not (cached / "vq.json").exists()
    assert fam.train(size, opts) == manifest  # cached: not retrained
    model = fam.build(size, opts, torch.device("cpu"))
    assert model.num_params() == fam.num_params(size, opts)
    images = model.sample(torch.tensor([3, 4]), torch.Generator().manual_seed(0))
    assert images.shape == (2, 3, 16, 16)


# ----------------------------------------------------------------------------- released checkpoints


def test_released_needs_a_checkpoint(monkeypatch) -> None:
    monkeypatch.delenv(released_mod.ENV_DIR, raising=False)
    with pytest.raises(BitscaleError, match="checkpoint"):
        LlamaGenFamily().build("gpt-b", released_mod.LlamaGenOptions(), torch.device("cpu"))


def test_released_loads_official_files_strictly(tmp_path, monkeypatch) -> None:
    # The real files are gigabytes; the same loading code runs on small stand-ins with official names.
    small_vq = VQConfig(codebook_size=64, ch=32, ch_mult=(1, 1, 2), z_channels=32, num_res_blocks=1)
    monkeypatch.setattr(released_mod, "VQ_CONFIG", small_vq)
    monkeypatch.setattr(released_mod, "gpt_config", lambda size, image_size: SMALL)
    gpt, vq = _small_gpt(), VQModel(small_vq)
    state = {**gpt.state_dict(), "freqs_cis": gpt.freqs_cis}  # sampler leftovers are tolerated
    torch.save({"model": state}, tmp_path / "c2i_B_384.pt")
    torch.save({"model": vq.state_dict()}, tmp_path / "vq_ds16_c2i.pt")
    monkeypatch.setenv(released_mod.ENV_DIR, str(tmp_path))
    model = LlamaGenFamily().build("gpt-b", released_mod.LlamaGenOptions(), torch.device("cpu"))
    assert model.sampler["cfg"] == 2.0 and model.sampler["top_k"] == 0 and model.dataset == "imagenet256"
    tokens = torch.randint(64, (2, 16))
    labels = torch.tensor([1, 2])
    with torch.no_grad():
        assert torch.equal(model.forward_batch({"tokens": tokens, "labels": labels}), gpt(tokens[:, :-1], labels))

    torch.save({"model": {k: v for k, v in state.items() if k != "norm.weight"}}, tmp_path / "c2i_B_384.pt")
    with pytest.raises(BitscaleError, match=r"c2i_B_384\.pt.*missing: norm\.weight"):
        LlamaGenFamily().build("gpt-b", released_mod.LlamaGenOptions(), torch.device("cpu"))


def test_training_bars_follow_no_progress(monkeypatch) -> None:
    # tqdm reads TQDM_DISABLE (set by .ci/run) once at import, so record what the bars are asked
    # for instead of reading the terminal.
    from bitscale.harness import progress

    made: list[tuple[str, object]] = []
    real_tqdm = progress.tqdm

    def fake_tqdm(iterable, desc, total=None, leave=True, **kw):
        made.append((desc, kw.get("disable")))
        return real_tqdm(iterable, desc=desc, total=total, leave=leave, disable=True)

    monkeypatch.setattr(progress, "tqdm", fake_tqdm)
    tokens, labels = torch.randint(SMALL.vocab_size, (8, 16)), torch.arange(8) % 10
    with progress.progress_bars(False):  # what `--no-progress` sets
        train_gpt(SMALL, tokens, labels, steps=2, seed=0, batch_size=4, desc="hidden-bar")
    train_gpt(SMALL, tokens, labels, steps=2, seed=0, batch_size=4, desc="shown-bar")
    assert made == [("hidden-bar", True), ("shown-bar", None)]  # None: tqdm's own default decides
