"""Parity of bitscale's RAR and PAR with the official code, on small random-weight configs.

    python tools/parity_rar_par.py --rar-repo ~/src/1d-tokenizer --par-repo ~/src/PAR
    python tools/parity_rar_par.py ... --write-fixtures tests/data   # maintainers: refresh the goldens

The official repositories are local checkouts (nothing is downloaded): bytedance/1d-tokenizer
(``modeling/rar.py``, ``modeling/modules/maskgit_vqgan.py``) and YuqingWang1029/PAR
(``autoregressive/models/gpt.py``, ``generate.py``). For each, a small config is built with the
official class, every parameter is set to seeded random values (so that no zero-initialised
adaLN gate or output head hides a difference), the state dict is loaded **strictly** into
bitscale's module, and the script compares:

- teacher-forced logits (raster order, and for RAR a random token order) -- max abs diff, must be
  <= 1e-5 in fp32;
- generated tokens for a fixed seed with the official sampler (KV cache, guidance) vs bitscale's,
  which draws from a ``torch.Generator`` seeded alike -- must be identical;
- for the MaskGIT-VQGAN tokenizer: decoded images for random codes, and codes of random images.

One import is stubbed: ``einops`` (not a bitscale dependency), which ``modeling/modules/__init__``
imports through the training losses and TiTok blocks; nothing on the RAR/tokenizer path calls it
(the stub raises if anything does). OmegaConf configs are replaced by a plain attribute object.

``--write-fixtures DIR`` also writes what ``tests/test_rar_par.py`` re-checks without the
official code: the official state-dict names and shapes of RAR-B and PAR-XL (built on the meta
device) as JSON, and the small models' weights, inputs and official outputs as safetensors.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path
from typing import Any

import torch

from bitscale.plugins.models.checkpoint import load_strict
from bitscale.plugins.models.par.generate import generate as par_generate
from bitscale.plugins.models.par.gpt import PARGPT, PARConfig
from bitscale.plugins.models.par.order import to_par_order, to_raster_order
from bitscale.plugins.models.par.released import par_config
from bitscale.plugins.models.rar.generate import generate as rar_generate
from bitscale.plugins.models.rar.gpt import RAR, RARConfig
from bitscale.plugins.models.rar.maskgit_vq import MaskGITVQ, MaskGITVQConfig
from bitscale.plugins.models.rar.released import rar_config

TOL = 1e-5
SEED = 1234

#: The small configs compared (fixtures store their weights).
RAR_SMALL = RARConfig(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=128,
    image_seq_len=16,
    codebook_size=32,
    num_classes=10,
    pos_extra=1024,
    timestep_extra=100,
)
RAR_SAMPLER = {"guidance": 4.0, "guidance_pow": 2.75, "temperature": 1.02}
VQ_SMALL = MaskGITVQConfig(hidden_channels=32, channel_mult=(1, 2), num_res_blocks=1, z_channels=16, codebook_size=32)
PAR_SMALL = {
    "4x": PARConfig(
        dim=64,
        n_layer=2,
        n_head=1,
        vocab_size=64,
        block_size=16,
        num_classes=10,
        multiple_of=32,
        ar_token_num=4,
        spe_token_num=3,
        token_dropout_p=0.0,
        resid_dropout_p=0.0,
        ffn_dropout_p=0.0,
    ),
    "16x": PARConfig(
        dim=64,
        n_layer=2,
        n_head=1,
        vocab_size=64,
        block_size=64,
        num_classes=10,
        multiple_of=32,
        ar_token_num=16,
        spe_token_num=15,
        token_dropout_p=0.0,
        resid_dropout_p=0.0,
        ffn_dropout_p=0.0,
    ),
}
PAR_SAMPLER = {"cfg": 1.5, "temperature": 1.0, "top_k": 0, "top_p": 1.0}


class Attr(dict):
    """A stand-in for OmegaConf's attribute access (``config.model.generator.hidden_size``, ``.get``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _stub_einops() -> None:
    class Stub(types.ModuleType):
        def __getattr__(self, name: str) -> Any:
            if name.startswith("__"):
                raise AttributeError(name)

            def unavailable(*args: Any, **kwargs: Any) -> None:
                raise RuntimeError("einops is stubbed by tools/parity_rar_par.py and must not be called")

            return unavailable

    for name in ("einops", "einops.layers", "einops.layers.torch"):
        sys.modules.setdefault(name, Stub(name))


def _import_official(repo: Path, modules: list[str]) -> list[types.ModuleType]:
    """Import ``modules`` from the checkout ``repo`` (its root first on ``sys.path``), then forget the path."""
    import importlib

    sys.path.insert(0, str(repo))
    try:
        return [importlib.import_module(m) for m in modules]
    finally:
        sys.path.remove(str(repo))


@torch.no_grad()
def randomize(module: torch.nn.Module, seed: int) -> None:
    """Seeded random values for every parameter: N(0, 0.05), around 1 for the weights of norm layers
    (rounded to float16 values, kept in float32)."""
    gen = torch.Generator().manual_seed(seed)
    for mod_name, mod in module.named_modules():
        norm = "Norm" in type(mod).__name__
        for name, p in mod.named_parameters(recurse=False):
            noise = torch.randn(p.shape, generator=gen) * 0.05
            # Values representable in float16, so that the fixtures store the weights in half the bytes, exactly.
            p.copy_((noise + 1.0 if norm and name == "weight" else noise).half().float())


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


def key_shapes(module: torch.nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in module.state_dict().items()}


# ---------------------------------------------------------------------------------------------- RAR


def official_rar(rar_mod: types.ModuleType, cfg: RARConfig) -> torch.nn.Module:
    gen = Attr(
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        intermediate_size=cfg.intermediate_size,
        image_seq_len=cfg.image_seq_len,
        condition_num_classes=cfg.num_classes,
        dropout=0.0,
        attn_drop=0.0,
    )
    config = Attr(model=Attr(generator=gen, vq_model=Attr(codebook_size=cfg.codebook_size)))
    return rar_mod.RAR(config)


def official_maskgit_vq(vq_mod: types.ModuleType, cfg: MaskGITVQConfig, resolution: int) -> torch.nn.Module:
    """The official ``PretrainedTokenizer`` composition (encoder, decoder, quantize) of the official classes."""
    conf = Attr(
        channel_mult=list(cfg.channel_mult),
        num_resolutions=len(cfg.channel_mult),
        dropout=0.0,
        hidden_channels=cfg.hidden_channels,
        num_channels=cfg.num_channels,
        num_res_blocks=cfg.num_res_blocks,
        resolution=resolution,
        z_channels=cfg.z_channels,
    )
    tok = torch.nn.Module()
    tok.encoder = vq_mod.Encoder(conf)
    tok.decoder = vq_mod.Decoder(conf)
    tok.quantize = vq_mod.VectorQuantizer(
        num_embeddings=cfg.codebook_size, embedding_dim=cfg.z_channels, commitment_cost=0.25
    )
    return tok


@torch.no_grad()
def rar_parity(repo: Path, fixtures: dict[str, torch.Tensor]) -> list[tuple[str, str, bool]]:
    _stub_einops()
    rar_mod, vq_mod = _import_official(repo, ["modeling.rar", "modeling.modules.maskgit_vqgan"])
    rows = []
    torch.manual_seed(0)
    off = official_rar(rar_mod, RAR_SMALL).eval()
    off.set_random_ratio(0.0)
    randomize(off, SEED)
    ours = RAR(RAR_SMALL).eval()
    load_strict(ours, off.state_dict(), "official RAR (small)")
    rows.append(("RAR state dict (strict)", f"{len(off.state_dict())} keys", True))

    gen = torch.Generator().manual_seed(SEED + 1)
    b, n = 4, RAR_SMALL.image_seq_len
    tokens = torch.randint(0, RAR_SMALL.codebook_size, (b, n), generator=gen)
    labels = torch.randint(0, RAR_SMALL.num_classes, (b,), generator=gen)
    orders = torch.stack([torch.randperm(n, generator=gen) for _ in range(b)])
    cond = off.preprocess_condition(labels.clone(), cond_drop_prob=0.0)
    off_raster = off.forward_fn(tokens, cond, orders=None, is_sampling=False)[:, :-1]
    ours_raster = ours(tokens[:, :-1], labels)
    off_random = off.forward_fn(tokens, cond, orders=orders, is_sampling=False)[:, :-1]
    ours_random = ours(tokens.gather(1, orders)[:, :-1], labels, orders)
    for what, a, c in (("raster", off_raster, ours_raster), ("random order", off_random, ours_random)):
        d = max_diff(a, c)
        rows.append((f"RAR logits, {what}", f"max |diff| {d:.2e}", d <= TOL))

    torch.manual_seed(SEED + 2)
    off_tokens = off.generate(
        labels,
        guidance_scale=RAR_SAMPLER["guidance"],
        randomize_temperature=RAR_SAMPLER["temperature"],
        guidance_scale_pow=RAR_SAMPLER["guidance_pow"],
    )
    ours_rng = torch.Generator().manual_seed(SEED + 2)
    # The official generate first draws B uniforms from the global RNG for a label dropout of probability 0
    # (preprocess_condition); skip the same draws so that both samplers see the same random stream.
    torch.rand(labels.shape, generator=ours_rng)
    our_tokens = rar_generate(ours, labels, generator=ours_rng, **RAR_SAMPLER)
    same = bool((off_tokens == our_tokens).all())
    rows.append(
        (
            "RAR generated tokens (KV cache, power-cosine cfg)",
            f"{int((off_tokens == our_tokens).sum())}/{off_tokens.numel()} equal",
            same,
        )
    )

    off_vq = official_maskgit_vq(vq_mod, VQ_SMALL, resolution=16).eval()
    randomize(off_vq, SEED + 3)
    ours_vq = MaskGITVQ(VQ_SMALL).eval()
    load_strict(ours_vq, off_vq.state_dict(), "official MaskGIT-VQGAN (small)")
    codes = torch.randint(0, VQ_SMALL.codebook_size, (b, 64), generator=gen)
    images01 = torch.rand(b, 3, 16, 16, generator=gen)
    off_dec = off_vq.decoder(off_vq.quantize.get_codebook_entry(codes)).clamp(0.0, 1.0)
    ours_dec = ours_vq.decode_tokens(codes)
    d = max_diff(off_dec, ours_dec)
    rows.append(("MaskGIT-VQGAN decode", f"max |diff| {d:.2e}", d <= TOL))
    off_codes = off_vq.quantize(off_vq.encoder(images01))[1]
    ours_codes = ours_vq.encode_tokens(images01)
    rows.append(
        (
            "MaskGIT-VQGAN encode (codes)",
            f"{int((off_codes == ours_codes).sum())}/{off_codes.numel()} equal",
            bool((off_codes == ours_codes).all()),
        )
    )

    fixtures.update(
        {
            **{f"rar.weights.{k}": v.half().contiguous() for k, v in off.state_dict().items()},
            **{f"maskgit.weights.{k}": v.half().contiguous() for k, v in off_vq.state_dict().items()},
            "rar.tokens": tokens,
            "rar.labels": labels,
            "rar.orders": orders,
            "rar.logits_raster": off_raster.contiguous(),
            "rar.logits_random": off_random.contiguous(),
            "rar.generated": off_tokens,
            "maskgit.codes": codes,
            "maskgit.images01": images01,
            "maskgit.decoded": off_dec.contiguous(),
            "maskgit.encoded": off_codes,
        }
    )
    return rows


# ---------------------------------------------------------------------------------------------- PAR


def official_par(gpt_mod: types.ModuleType, cfg: PARConfig) -> torch.nn.Module:
    args = gpt_mod.ModelArgs(
        dim=cfg.dim,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        vocab_size=cfg.vocab_size,
        block_size=cfg.block_size,
        num_classes=cfg.num_classes,
        multiple_of=cfg.multiple_of,
        cls_token_num=cfg.cls_token_num,
        spe_token_num=cfg.spe_token_num,
        ar_token_num=cfg.ar_token_num,
        token_dropout_p=0.0,
        resid_dropout_p=0.0,
        ffn_dropout_p=0.0,
        class_dropout_prob=cfg.class_dropout_prob,
    )
    return gpt_mod.Transformer(args)


def official_par_to_raster(seq: torch.Tensor, grid: int, regions: int) -> torch.Tensor:
    """The official sampling script's reshuffle of generated tokens back to the grid."""
    sub = int(regions**0.5)
    x = seq.reshape(seq.shape[0], grid // sub, grid // sub, sub, sub).permute(0, 3, 1, 4, 2)
    return x.reshape(seq.shape[0], -1)


def official_par_order(z: torch.Tensor, grid: int, regions: int) -> torch.Tensor:
    """The official training script's reorder of a raster grid into PAR's sequence."""
    sub = int(regions**0.5)
    x = z.reshape(z.shape[0], sub, grid // sub, sub, grid // sub).permute(0, 2, 4, 1, 3)
    return x.reshape(z.shape[0], -1)


@torch.no_grad()
def par_parity(repo: Path, fixtures: dict[str, torch.Tensor]) -> list[tuple[str, str, bool]]:
    gpt_mod, gen_mod = _import_official(repo, ["autoregressive.models.gpt", "autoregressive.models.generate"])
    rows = []
    for variant, cfg in PAR_SMALL.items():
        torch.manual_seed(0)
        off = official_par(gpt_mod, cfg).eval()
        randomize(off, SEED)
        ours = PARGPT(cfg).eval()
        load_strict(ours, off.state_dict(), f"official PAR-{variant} (small)")
        rows.append((f"PAR-{variant} state dict (strict)", f"{len(off.state_dict())} keys", True))
        gen = torch.Generator().manual_seed(SEED + 1)
        b, n, grid = 4, cfg.block_size, cfg.grid
        raster = torch.randint(0, cfg.vocab_size, (b, n), generator=gen)
        labels = torch.randint(0, cfg.num_classes, (b,), generator=gen)
        z = official_par_order(raster, grid, cfg.ar_token_num)
        same_order = bool((z == to_par_order(raster, grid, cfg.ar_token_num)).all())
        rows.append((f"PAR-{variant} region order", "official reshape/permute vs ours", same_order))
        seq_len = n + cfg.ar_token_num - 1
        off_logits = off(z[:, :-1], labels, input_pos=torch.arange(seq_len))[0][:, :n]
        ours_logits = ours(z[:, :-1], labels)
        d = max_diff(off_logits, ours_logits)
        rows.append((f"PAR-{variant} logits (group mask, eval)", f"max |diff| {d:.2e}", d <= TOL))

        torch.manual_seed(SEED + 2)
        off_seq = gen_mod.generate(
            off,
            labels,
            n,
            cfg_scale=PAR_SAMPLER["cfg"],
            temperature=PAR_SAMPLER["temperature"],
            top_k=PAR_SAMPLER["top_k"],
            top_p=PAR_SAMPLER["top_p"],
            sample_logits=True,
            ar_token_num=cfg.ar_token_num,
            spe_token_num=cfg.spe_token_num,
        )
        for layer in off.layers:  # the official cache stays attached (and in state_dict) after sampling
            layer.attention.kv_cache = None
        our_seq = par_generate(ours, labels, generator=torch.Generator().manual_seed(SEED + 2), **PAR_SAMPLER)
        off_grid = official_par_to_raster(off_seq.long(), grid, cfg.ar_token_num)
        our_grid = to_raster_order(our_seq, grid, cfg.ar_token_num)
        rows.append(
            (
                f"PAR-{variant} generated tokens (KV cache, cfg {PAR_SAMPLER['cfg']})",
                f"{int((off_grid == our_grid).sum())}/{off_grid.numel()} equal",
                bool((off_grid == our_grid).all()),
            )
        )
        fixtures.update(
            {
                **{f"par{variant}.weights.{k}": v.half().contiguous() for k, v in off.state_dict().items()},
                f"par{variant}.tokens": raster,
                f"par{variant}.labels": labels,
                f"par{variant}.logits": off_logits.contiguous(),
                f"par{variant}.generated": off_grid,
            }
        )
    return rows


# ---------------------------------------------------------------------------------------------- fixtures


def official_keys(rar_repo: Path, par_repo: Path) -> dict[str, dict[str, list[int]]]:
    """State-dict names and shapes of the official RAR-B and PAR-XL (4x, 384 px), built on the meta device."""
    _stub_einops()
    (rar_mod,) = _import_official(rar_repo, ["modeling.rar"])
    (gpt_mod,) = _import_official(par_repo, ["autoregressive.models.gpt"])
    import contextlib

    @contextlib.contextmanager
    def cpu_linspace():
        # PAR's constructor reads drop-path rates with ``.item()`` of a linspace, impossible on meta tensors.
        linspace = torch.linspace
        torch.linspace = lambda *a, **k: linspace(*a, **{**k, "device": "cpu"})
        try:
            yield
        finally:
            torch.linspace = linspace

    with torch.device("meta"), cpu_linspace():
        rar_b = official_rar(rar_mod, rar_config("rar-b"))
        cfg = par_config("xl-4x")
        par_xl = gpt_mod.GPT_models["GPT-XL"](
            vocab_size=cfg.vocab_size,
            block_size=cfg.block_size,
            num_classes=cfg.num_classes,
            spe_token_num=cfg.spe_token_num,
            ar_token_num=cfg.ar_token_num,
        )
    return {"rar-b": key_shapes(rar_b), "par-xl-4x": key_shapes(par_xl)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rar-repo", type=Path, help="local checkout of bytedance/1d-tokenizer")
    p.add_argument("--par-repo", type=Path, help="local checkout of YuqingWang1029/PAR")
    p.add_argument("--write-fixtures", type=Path, metavar="DIR", help="write the golden fixtures into DIR")
    args = p.parse_args(argv)
    if not args.rar_repo and not args.par_repo:
        p.error("give --rar-repo and/or --par-repo (local checkouts of the official code)")
    for repo in (args.rar_repo, args.par_repo):
        if repo is not None and not repo.is_dir():
            p.error(f"{repo}: not a folder (a local checkout of the official repository)")
    torch.set_num_threads(1)
    fixtures: dict[str, torch.Tensor] = {}
    rows = []
    if args.rar_repo:
        rows += rar_parity(args.rar_repo, fixtures)
    if args.par_repo:
        rows += par_parity(args.par_repo, fixtures)
    width = max(len(r[0]) for r in rows)
    for what, figure, ok in rows:
        print(f"{'ok  ' if ok else 'FAIL'} {what:<{width}}  {figure}")
    if args.write_fixtures:
        if not (args.rar_repo and args.par_repo):
            p.error("--write-fixtures needs both --rar-repo and --par-repo")
        from safetensors.torch import save_file

        out = args.write_fixtures
        out.mkdir(parents=True, exist_ok=True)
        save_file(fixtures, str(out / "rar_par_official_outputs.safetensors"))
        keys = official_keys(args.rar_repo, args.par_repo)
        (out / "rar_par_official_keys.json").write_text(json.dumps(keys, indent=0, sort_keys=True) + "\n")
        print(f"wrote {out / 'rar_par_official_outputs.safetensors'} and {out / 'rar_par_official_keys.json'}")
    return 0 if all(r[2] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
