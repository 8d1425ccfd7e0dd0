"""RAR and PAR: official names/shapes, parity with the official code's outputs (golden fixtures),
KV-cached sampling equals teacher forcing, region order, training, released-file loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bitscale.harness.errors import BitscaleError
from bitscale.plugins.models.checkpoint import load_strict
from bitscale.plugins.models.llamagen.vq import VQConfig, VQModel
from bitscale.plugins.models.par import PARFamily
from bitscale.plugins.models.par import released as par_released
from bitscale.plugins.models.par.generate import generate as par_generate
from bitscale.plugins.models.par.gpt import PARGPT, PARConfig, group_mask
from bitscale.plugins.models.par.order import region_order, to_par_order, to_raster_order
from bitscale.plugins.models.par.training import train_par
from bitscale.plugins.models.rar import RARFamily
from bitscale.plugins.models.rar import released as rar_released
from bitscale.plugins.models.rar.generate import generate as rar_generate
from bitscale.plugins.models.rar.generate import guidance_scale
from bitscale.plugins.models.rar.gpt import RAR, RARConfig
from bitscale.plugins.models.rar.maskgit_vq import MaskGITVQ, MaskGITVQConfig
from bitscale.plugins.models.rar.training import draw_orders, random_ratio, train_rar

DATA = Path(__file__).with_name("data")
KEYS = json.loads((DATA / "rar_par_official_keys.json").read_text())
GOLDEN = load_file(str(DATA / "rar_par_official_outputs.safetensors"))

# The small configs of tools/parity_rar_par.py, whose official outputs the fixtures hold.
RAR_SMALL = RARConfig(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=128,
    image_seq_len=16,
    codebook_size=32,
    num_classes=10,
)
VQ_SMALL = MaskGITVQConfig(hidden_channels=32, channel_mult=(1, 2), num_res_blocks=1, z_channels=16, codebook_size=32)
_PAR = dict(
    dim=64,
    n_layer=2,
    n_head=1,
    vocab_size=64,
    num_classes=10,
    multiple_of=32,
    token_dropout_p=0.0,
    resid_dropout_p=0.0,
    ffn_dropout_p=0.0,
)
PAR_SMALL = {
    "4x": PARConfig(block_size=16, ar_token_num=4, spe_token_num=3, **_PAR),
    "16x": PARConfig(block_size=64, ar_token_num=16, spe_token_num=15, **_PAR),
}


def _golden(prefix: str) -> dict[str, torch.Tensor]:
    """Entries under ``prefix`` (weights are stored as float16 values, exactly: the tool rounds them so)."""
    return {
        k[len(prefix) :]: v.float() if v.is_floating_point() else v for k, v in GOLDEN.items() if k.startswith(prefix)
    }


def _shapes(module: torch.nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in module.state_dict().items()}


# ----------------------------------------------------------------------------- official names, parity


def test_rar_b_and_par_xl_have_the_official_names_and_shapes() -> None:
    with torch.device("meta"):
        rar_b = RAR(rar_released.rar_config("rar-b"))
        par_xl = PARGPT(par_released.par_config("xl-4x"))
    assert _shapes(rar_b) == KEYS["rar-b"]
    assert _shapes(par_xl) == KEYS["par-xl-4x"]


def test_released_parameter_counts() -> None:
    # RAR paper: 261M / 461M / 955M / 1.5B; PAR/LlamaGen: 775M / 1.4B / 3.1B.
    rar = {s: RARFamily().num_params(s, None) / 1e6 for s in RARFamily.sizes}
    assert [round(rar[s]) for s in ("rar-b", "rar-l", "rar-xl")] == [261, 462, 955] and round(rar["rar-xxl"]) == 1499
    par = {s: PARFamily().num_params(s, None) / 1e9 for s in PARFamily.sizes}
    assert round(par["xl-4x"], 3) == 0.775 and round(par["xxl-4x"], 2) == 1.41 and round(par["3b-4x"], 1) == 3.1


@torch.no_grad()
def test_rar_matches_the_official_logits_and_samples() -> None:
    rar = RAR(RAR_SMALL).eval()
    load_strict(rar, _golden("rar.weights."), "golden RAR")
    tokens, labels, orders = GOLDEN["rar.tokens"], GOLDEN["rar.labels"], GOLDEN["rar.orders"]
    assert (rar(tokens[:, :-1], labels) - GOLDEN["rar.logits_raster"]).abs().max() <= 1e-5
    assert (rar(tokens.gather(1, orders)[:, :-1], labels, orders) - GOLDEN["rar.logits_random"]).abs().max() <= 1e-5
    rng = torch.Generator().manual_seed(1234 + 2)
    torch.rand(labels.shape, generator=rng)  # the official sampler's no-op label dropout draw (see the tool)
    out = rar_generate(rar, labels, guidance=4.0, guidance_pow=2.75, temperature=1.02, generator=rng)
    assert torch.equal(out, GOLDEN["rar.generated"])


@torch.no_grad()
def test_maskgit_tokenizer_matches_the_official_one() -> None:
    vq = MaskGITVQ(VQ_SMALL).eval()
    load_strict(vq, _golden("maskgit.weights."), "golden MaskGIT-VQGAN")
    assert (vq.decode_tokens(GOLDEN["maskgit.codes"]) - GOLDEN["maskgit.decoded"]).abs().max() <= 1e-5
    assert torch.equal(vq.encode_tokens(GOLDEN["maskgit.images01"]), GOLDEN["maskgit.encoded"])
    # bitscale's [-1, 1] convention at the edges
    assert torch.allclose(vq.decode_code(GOLDEN["maskgit.codes"]), GOLDEN["maskgit.decoded"] * 2 - 1)


@pytest.mark.parametrize("variant", ["4x", "16x"])
@torch.no_grad()
def test_par_matches_the_official_logits_and_samples(variant: str) -> None:
    cfg = PAR_SMALL[variant]
    gpt = PARGPT(cfg).eval()
    load_strict(gpt, _golden(f"par{variant}.weights."), "golden PAR")
    raster, labels = GOLDEN[f"par{variant}.tokens"], GOLDEN[f"par{variant}.labels"]
    z = to_par_order(raster, cfg.grid, cfg.ar_token_num)
    assert (gpt(z[:, :-1], labels) - GOLDEN[f"par{variant}.logits"]).abs().max() <= 1e-5
    seq = par_generate(gpt, labels, cfg=1.5, generator=torch.Generator().manual_seed(1234 + 2))
    assert torch.equal(to_raster_order(seq, cfg.grid, cfg.ar_token_num), GOLDEN[f"par{variant}.generated"])


# ----------------------------------------------------------------------------- RAR mechanics


def _random_rar(seed: int = 0) -> RAR:
    torch.manual_seed(seed)
    rar = RAR(RAR_SMALL)
    with torch.no_grad():  # official init zeroes the adaLN gates: randomise them to exercise the blocks
        for p in rar.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return rar.eval()


def test_guidance_schedule_is_the_official_power_cosine() -> None:
    assert float(guidance_scale(0, 256, 16.0, 2.75)) == 1.0  # starts unguided ...
    assert abs(float(guidance_scale(128, 256, 16.0, 1.0)) - 8.5) < 1e-6  # ... half-way at s = N/2 when pow 1 ...
    assert float(guidance_scale(5, 256, 4.0, 0.0)) == 4.0  # ... and pow 0 is a constant scale


@pytest.mark.parametrize("guidance", [0.0, 3.0])
def test_rar_cached_greedy_generation_equals_teacher_forcing(guidance: float) -> None:
    rar = _random_rar()
    labels = torch.tensor([0, 3, 7])
    tokens = rar_generate(rar, labels, guidance=guidance, top_k=1)
    assert torch.equal(tokens, rar_generate(rar, labels, guidance=guidance, top_k=1, use_cache=False))
    with torch.no_grad():
        logits = rar(tokens[:, :-1], labels)
        if guidance:
            uncond = rar(tokens[:, :-1], torch.full_like(labels, 10))
            w = torch.stack([guidance_scale(s, 16, guidance, 0.0) for s in range(16)]).view(1, 16, 1)
            logits = uncond + (logits - uncond) * w
    assert torch.equal(logits.argmax(-1), tokens)
    assert not any("cache" in k for k in rar.state_dict())


def test_rar_random_order_logits_follow_the_permutation() -> None:
    # Raster order passed explicitly equals the default, and a permutation of the same tokens changes the logits.
    rar = _random_rar()
    tokens, labels = torch.randint(32, (2, 16)), torch.tensor([1, 2])
    raster = torch.arange(16).expand(2, -1)
    with torch.no_grad():
        assert torch.equal(rar(tokens[:, :-1], labels), rar(tokens[:, :-1], labels, raster))
        perm = draw_orders(2, 16, 1.0, torch.Generator().manual_seed(0))
        assert not torch.allclose(rar(tokens.gather(1, perm)[:, :-1], labels, perm), rar(tokens[:, :-1], labels))
    assert [random_ratio(s, 100) for s in (0, 49, 60, 75, 99)] == [1.0, 1.0, 0.6, 0.0, 0.0]


def test_rar_training_lowers_the_loss_deterministically() -> None:
    tokens = torch.randint(8, (64, 16))  # few codes in use: learnable in a few steps
    labels = torch.randint(10, (64,))
    cfg = RARConfig(**{**RAR_SMALL.to_dict(), "pos_extra": 2, "timestep_extra": 2})
    a, ra = train_rar(cfg, tokens, labels, steps=30, seed=0, batch_size=16, lr=3e-3)
    b, _ = train_rar(cfg, tokens, labels, steps=30, seed=0, batch_size=16, lr=3e-3)
    assert ra.final_loss < ra.initial_loss - 0.5
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


# ----------------------------------------------------------------------------- PAR mechanics


def test_region_order_interleaves_regions_and_round_trips() -> None:
    # 4x4 grid, 4 regions of 2x2: the first four tokens are the top-left token of each region.
    assert region_order(4, 4).tolist()[:8] == [0, 2, 8, 10, 1, 3, 9, 11]
    x = torch.randint(64, (3, 16))
    assert torch.equal(to_raster_order(to_par_order(x, 4, 4), 4, 4), x)
    with pytest.raises(ValueError, match="regions"):
        region_order(4, 9)


def test_group_mask_lets_a_parallel_step_see_itself() -> None:
    m = group_mask(7 + 16 - 4, 4)  # class + 16 tokens + 3 stand-ins
    assert m[:4, :4].equal(torch.ones(4, 4, dtype=torch.bool).tril())  # sequential phase: causal
    assert m[4:8, :8].all() and not m[4:8, 8:].any()  # first parallel group sees all of itself
    assert m[:, 0].all()


def _random_par(variant: str = "4x") -> PARGPT:
    torch.manual_seed(0)
    gpt = PARGPT(PAR_SMALL[variant])
    with torch.no_grad():
        gpt.output.weight.normal_(0, 0.05)  # the official init zeroes the head
    return gpt.eval()


@pytest.mark.parametrize("cfg", [1.0, 2.0])
def test_par_cached_parallel_generation_equals_teacher_forcing(cfg: float) -> None:
    gpt = _random_par()
    labels = torch.tensor([0, 4, 9])
    seq = par_generate(gpt, labels, cfg=cfg, top_k=1)
    assert torch.equal(seq, par_generate(gpt, labels, cfg=cfg, top_k=1, use_cache=False))
    with torch.no_grad():
        logits = gpt(seq[:, :-1], labels)
        if cfg > 1:
            uncond = gpt(seq[:, :-1], torch.full_like(labels, 10))
            logits = uncond + (logits - uncond) * cfg
    assert torch.equal(logits.argmax(-1), seq)
    assert set(gpt.state_dict()) == set(_random_par().state_dict())


def test_par_training_lowers_the_loss() -> None:
    tokens, labels = torch.randint(8, (64, 16)), torch.randint(10, (64,))
    _, result = train_par(PAR_SMALL["4x"], tokens, labels, steps=30, seed=0, batch_size=16, lr=3e-3)
    assert result.final_loss < result.initial_loss - 0.5


# ----------------------------------------------------------------------------- released files


def test_released_families_need_their_checkpoints(monkeypatch) -> None:
    monkeypatch.delenv(rar_released.ENV_DIR, raising=False)
    monkeypatch.delenv(par_released.ENV_DIR, raising=False)
    with pytest.raises(BitscaleError, match="rar_b.bin"):
        RARFamily().build("rar-b", None, torch.device("cpu"))
    with pytest.raises(BitscaleError, match="PAR-XL-4x.pt"):
        PARFamily().build("xl-4x", None, torch.device("cpu"))


def test_rar_released_loads_official_files_strictly(tmp_path, monkeypatch) -> None:
    # The real files are gigabytes; the same loading code runs on small stand-ins written in the official layout.
    monkeypatch.setattr(rar_released, "rar_config", lambda size: RAR_SMALL)
    monkeypatch.setattr(rar_released, "MaskGITVQConfig", lambda: VQ_SMALL)
    rar, vq = _random_rar(), MaskGITVQ(VQ_SMALL)
    torch.save(rar.state_dict(), tmp_path / "rar_b.bin")  # raw state dicts, as released
    torch.save(vq.state_dict(), tmp_path / "maskgit-vqgan-imagenet-f16-256.bin")
    monkeypatch.setenv(rar_released.ENV_DIR, str(tmp_path))
    model = RARFamily().build("rar-b", None, torch.device("cpu"))
    assert model.sampler == {"guidance": 16.0, "guidance_pow": 2.75, "temperature": 1.0, "top_k": 0, "top_p": 1.0}
    tokens, labels = torch.randint(32, (2, 16)), torch.tensor([1, 2])
    with torch.no_grad():
        assert torch.equal(model.forward_batch({"tokens": tokens, "labels": labels}), rar(tokens[:, :-1], labels))
    state = rar.state_dict()
    state["extra.weight"] = state.pop("lm_head.bias")
    torch.save(state, tmp_path / "rar_b.bin")
    with pytest.raises(BitscaleError, match=r"rar_b\.bin.*missing: lm_head\.bias.*unexpected: extra\.weight"):
        RARFamily().build("rar-b", None, torch.device("cpu"))


def test_par_released_loads_official_files_strictly(tmp_path, monkeypatch) -> None:
    small_vq = VQConfig(codebook_size=64, ch=32, ch_mult=(1, 1, 2), z_channels=32, num_res_blocks=1)
    monkeypatch.setattr(par_released, "VQ_CONFIG", small_vq)
    monkeypatch.setattr(par_released, "par_config", lambda size: PAR_SMALL["4x"])
    gpt, vq = _random_par(), VQModel(small_vq)
    torch.save(gpt.state_dict(), tmp_path / "PAR-XXL-4x.pt")  # FSDP files are raw state dicts
    torch.save({"model": vq.state_dict()}, tmp_path / "vq_ds16_c2i.pt")
    monkeypatch.setenv(par_released.ENV_DIR, str(tmp_path))
    model = PARFamily().build("xxl-4x", None, torch.device("cpu"))
    assert model.sampler["cfg"] == 1.435 and model.output_size == 256
    raster, labels = torch.randint(64, (2, 16)), torch.tensor([3, 4])
    with torch.no_grad():
        want = gpt(to_par_order(raster, 4, 4)[:, :-1], labels)
        assert torch.equal(model.forward_batch({"tokens": raster, "labels": labels}), want)
    state = {k: v for k, v in gpt.state_dict().items() if not k.startswith("spe_tok_embeddings")}
    torch.save({"model": state}, tmp_path / "PAR-XXL-4x.pt")
    with pytest.raises(BitscaleError, match=r"PAR-XXL-4x\.pt.*missing: spe_tok_embeddings"):
        PARFamily().build("xxl-4x", None, torch.device("cpu"))


# ----------------------------------------------------------------------------- QAT distillation on the tiny families


@pytest.mark.slow
@pytest.mark.parametrize("loss_name", ["forward-kl", "topkld", "js"])
@pytest.mark.parametrize("family", ["rar-tiny", "par-tiny"])
def test_qat_with_logit_losses_beats_rtn_on_the_tiny_families(family: str, loss_name: str) -> None:
    import copy

    from bitscale.harness.plugin_loader import get_plugins
    from bitscale.plugins.quantizers.qat import QAT, QATOptions
    from bitscale.plugins.quantizers.rtn import RTN
    from bitscale.precision import Precision

    torch.set_num_threads(1)
    plugins = get_plugins()
    fam = plugins.models.get(family)
    model = fam.build(fam.sizes[0], fam.Options(), torch.device("cpu"))
    held_out = model.calibration_batches(4, torch.Generator().manual_seed(123))
    with torch.no_grad():
        reference = [model.forward_batch(b) for b in held_out]

    def error(quantizer, loss=None) -> float:
        m = copy.deepcopy(model)
        batches = m.calibration_batches(8, torch.Generator().manual_seed(0))
        quantizer.quantize(m, Precision.parse("W3A16"), batches, loss=loss, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():  # KL of the quantized model's next-token distributions from the full-precision ones
            kls = [
                torch.nn.functional.kl_div(
                    m.forward_batch(b).log_softmax(-1), r.log_softmax(-1), log_target=True, reduction="batchmean"
                )
                for b, r in zip(held_out, reference)
            ]
        return float(torch.stack(kls).mean())

    rtn = error(RTN(RTN.Options()))
    qat = error(QAT(QATOptions(steps=40)), plugins.losses.get(loss_name)())
    assert qat < rtn, f"{family} W3A16: QAT ({loss_name}) KL {qat:.4f} vs RTN {rtn:.4f}"


def test_coupled_noise_draws_the_same_tokens_whatever_the_generator_and_cache() -> None:
    # Paired evaluation: tokens come from the coupled Gumbel noise, a function of (seed, sample, position).
    from bitscale.harness.noise import TokenNoise, sample_keys

    labels = torch.tensor([0, 4, 9])
    noise = TokenNoise(sample_keys(0, torch.arange(3)))
    rar, par = _random_rar(), _random_par()
    for gen_fn, model, kw in (
        (rar_generate, rar, {"guidance": 3.0, "guidance_pow": 1.0}),
        (par_generate, par, {"cfg": 2.0}),
    ):
        a = gen_fn(model, labels, generator=torch.Generator().manual_seed(0), noise=noise, **kw)
        b = gen_fn(model, labels, generator=torch.Generator().manual_seed(1), noise=noise, use_cache=False, **kw)
        c = gen_fn(model, labels, generator=torch.Generator().manual_seed(0), **kw)
        assert torch.equal(a, b) and not torch.equal(a, c)
