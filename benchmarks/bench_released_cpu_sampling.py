"""CPU sampling of the released MAR / RAR / PAR architectures: bitscale's sampler against the official
one, on the same config and the same random weights, in the same run (issue 16).

    python benchmarks/bench_released_cpu_sampling.py --mar-repo ~/src/mar --rar-repo ~/src/1d-tokenizer \
        --par-repo ~/src/PAR [--mar-iters 2] [--par-steps 24] [--par-variants 4x,16x] [--repeats 1]

The official repositories are local checkouts (nothing is downloaded; CI never runs this): LTH14/mar,
bytedance/1d-tokenizer, YuqingWang1029/PAR. They are imported as ``tools/mar_parity.py`` and
``tools/parity_rar_par.py`` import them. For each model the official class is built at the released
size, every parameter set to seeded random values, and the state dict loaded **strictly** into
bitscale's module (``assign=True``: both modules then read the same tensors, so the two samplers see
the same weights and the machine holds one copy). Class-conditional, batch 8, each sampler with the
released model's official FID settings (CFG doubles the batch to 16 rows in both):

- MAR-B: 256 AR iterations, 100 diffusion-head steps, cfg 2.9 (linear), temperature 1.0;
- RAR-B: 256 tokens, guidance 16.0 (power 2.75), temperature 1.0, KV cache;
- PAR-XL-4x: 576 tokens (384 px), cfg 1.5, KV cache; ``16x``: the same XL network with 16 regions
  (not a released checkpoint: the released 16x model is PAR-3B, whose 12.4 GB of float32 weights,
  built twice before the tensors are shared, plus KV caches, exceed this 23 GiB machine).

A full sampling of MAR-B (~2 h per sampler here) or PAR-XL (~5-20 CPU-minutes) does not fit a shared
2-core CPU, so these are timed over a **fixed prefix of model steps**, the same for both samplers: a
forward pre-hook on the first transformer block (``encoder_blocks.0`` for MAR, ``blocks.0`` for RAR,
``layers.0`` for PAR -- the same name in both implementations) stops the sampler when it is about
to start step ``K + 1``, so exactly ``K`` whole steps are timed (for MAR, ``K`` AR iterations, each
with its 100 head steps). The number of steps each sampler took is printed, and must agree.
Timing is process CPU time (and wall time) of one sampler call, ``--repeats`` times (alternating
which sampler goes first), best taken; ``ratio`` = official / bitscale (>= 1: bitscale is as fast or
faster). ``--threads`` is the same for both (default 1).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType

import torch
from tabulate import tabulate

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

BATCH = 8


class Stop(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised by the step hook to end a sampler after its timed prefix."""


@contextlib.contextmanager
def stop_after(block: torch.nn.Module, steps: int | None, counter: list[int]) -> Iterator[None]:
    """Count calls of ``block``; raise :class:`Stop` when call ``steps + 1`` is about to run."""

    def hook(_mod: torch.nn.Module, _args: object) -> None:
        counter[0] += 1
        if steps is not None and counter[0] > steps:
            counter[0] -= 1  # step K + 1 did not run
            raise Stop

    handle = block.register_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@dataclass
class Timing:
    cpu: float
    wall: float
    steps: int


def time_once(fn: Callable[[], object], block: torch.nn.Module, steps: int | None) -> Timing:
    counter = [0]
    with stop_after(block, steps, counter):
        wall, cpu = time.perf_counter(), time.process_time()
        with contextlib.suppress(Stop):
            fn()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return Timing(cpu, wall, counter[0])


def compare(
    official: Callable[[], object],
    ours: Callable[[], object],
    off_block: torch.nn.Module,
    our_block: torch.nn.Module,
    steps: int | None,
    repeats: int,
    after: Callable[[], None] = lambda: None,
) -> tuple[Timing, Timing]:
    """Best-of-``repeats`` timings of both samplers, alternating which one runs first."""
    best: dict[str, Timing] = {}
    for r in range(repeats):
        order = [("official", official, off_block), ("bitscale", ours, our_block)]
        for name, fn, block in order if r % 2 == 0 else order[::-1]:
            t = time_once(fn, block, steps)
            after()
            gc.collect()
            print(f"    {name}: {t.cpu:.1f} CPU-s, {t.wall:.1f} s wall, {t.steps} steps", flush=True)
            if name not in best or t.cpu < best[name].cpu:
                best[name] = t
    if best["official"].steps != best["bitscale"].steps:
        raise SystemExit(f"error: the samplers ran {best['official'].steps} and {best['bitscale'].steps} steps")
    return best["official"], best["bitscale"]


def row(label: str, timed: str, off: Timing, ours: Timing) -> list[object]:
    return [
        label,
        timed,
        f"{off.cpu / BATCH:.2f}",
        f"{ours.cpu / BATCH:.2f}",
        f"{off.wall / BATCH:.2f}",
        f"{ours.wall / BATCH:.2f}",
        f"{off.cpu / ours.cpu:.2f}x",
    ]


@torch.no_grad()
def randomize(module: torch.nn.Module, seed: int) -> None:
    """Seeded N(0, 0.02^2) for every parameter, N(1, 0.02^2) for norm weights: no zero-initialised gate or
    head (the official initialisations have some) makes any part of the work trivial."""
    gen = torch.Generator().manual_seed(seed)
    for mod in module.modules():
        norm = "Norm" in type(mod).__name__
        for name, p in mod.named_parameters(recurse=False):
            p.copy_(torch.randn(p.shape, generator=gen) * 0.02 + (1.0 if norm and name == "weight" else 0.0))


def share_strict(ours: torch.nn.Module, official: torch.nn.Module, what: str) -> None:
    """Strict load of the official state dict into ``ours``, sharing the tensors (one copy in memory)."""
    from bitscale.plugins.models.checkpoint import load_strict

    load_strict(ours, official.state_dict(), what, assign=True)


# ---------------------------------------------------------------------------------------------- MAR


def mar_rows(repo: Path, iters: int, repeats: int) -> list[list[object]]:
    import mar_parity

    from bitscale.plugins.models.mar.mar import MAR, RELEASED_MAR, MARConfig
    from bitscale.plugins.models.mar.released import OFFICIAL_CFG, OFFICIAL_SAMPLER
    from bitscale.plugins.models.mar.sampling import sample_tokens

    mar_mod, _ = mar_parity.import_official(repo)
    spec = RELEASED_MAR["mar-b"]
    s = OFFICIAL_SAMPLER | {"cfg": OFFICIAL_CFG["mar-b"]}
    off = mar_mod.mar_base(
        diffloss_d=spec["diffloss_d"], diffloss_w=spec["diffloss_w"], num_sampling_steps=str(s["sampling_steps"])
    ).eval()
    randomize(off, 0)
    ours = MAR(MARConfig(**spec)).eval()
    share_strict(ours, off, "official MAR-B")
    labels = torch.arange(BATCH) * 111 % 1000
    print(
        f"MAR-B: {sum(p.numel() for p in off.parameters()) / 1e6:.0f}M parameters, first {iters} of "
        f"{s['num_iter']} AR iterations, sampler {s}",
        flush=True,
    )

    def official() -> None:
        torch.manual_seed(0)
        off.sample_tokens(
            BATCH,
            num_iter=s["num_iter"],
            cfg=s["cfg"],
            cfg_schedule=s["cfg_schedule"],
            labels=labels,
            temperature=s["temperature"],
        )

    def bitscale() -> None:
        sample_tokens(ours, labels, torch.Generator().manual_seed(0), **s)

    t_off, t_ours = compare(official, bitscale, off.encoder_blocks[0], ours.encoder_blocks[0], iters, repeats)
    return [row("MAR-B (cfg 2.9, 100 head steps)", f"{t_off.steps}/{s['num_iter']} AR iterations", t_off, t_ours)]


# ---------------------------------------------------------------------------------------------- RAR


def rar_rows(repo: Path, steps: int | None, repeats: int) -> list[list[object]]:
    import parity_rar_par as parity

    from bitscale.plugins.models.rar.generate import generate
    from bitscale.plugins.models.rar.gpt import RAR
    from bitscale.plugins.models.rar.released import FID_SAMPLER, rar_config

    parity._stub_einops()
    (rar_mod,) = parity._import_official(repo, ["modeling.rar"])
    cfg = rar_config("rar-b")
    off = parity.official_rar(rar_mod, cfg).eval()
    randomize(off, 0)
    ours = RAR(cfg).eval()
    share_strict(ours, off, "official RAR-B")
    s = FID_SAMPLER["rar-b"]
    labels = torch.arange(BATCH) * 111 % 1000
    n = cfg.image_seq_len
    print(
        f"RAR-B: {sum(p.numel() for p in off.parameters()) / 1e6:.0f}M parameters, "
        f"{steps or n} of {n} steps, sampler {s}",
        flush=True,
    )
    tokens: dict[str, torch.Tensor] = {}

    def official() -> None:
        torch.manual_seed(0)
        tokens["official"] = off.generate(
            labels,
            guidance_scale=s["guidance"],
            randomize_temperature=s["temperature"],
            guidance_scale_pow=s["guidance_pow"],
        )

    def bitscale() -> None:
        gen = torch.Generator().manual_seed(0)
        torch.rand(labels.shape, generator=gen)  # the official label-dropout draws (see tools/parity_rar_par.py)
        tokens["bitscale"] = generate(ours, labels, generator=gen, **s)

    t_off, t_ours = compare(
        official, bitscale, off.blocks[0], ours.blocks[0], steps, repeats, after=off.disable_kv_cache
    )
    if len(tokens) == 2:
        same = int((tokens["official"] == tokens["bitscale"]).sum())
        print(f"    generated tokens equal: {same}/{tokens['official'].numel()}")
    return [row("RAR-B (guidance 16, pow 2.75)", f"{t_off.steps}/{n} steps", t_off, t_ours)]


# ---------------------------------------------------------------------------------------------- PAR


def par_rows(repo: Path, variants: list[str], steps: int | None, repeats: int) -> list[list[object]]:
    import parity_rar_par as parity

    gpt_mod, gen_mod = parity._import_official(repo, ["autoregressive.models.gpt", "autoregressive.models.generate"])
    rows = []
    for variant in variants:
        rows.append(par_row(parity, gpt_mod, gen_mod, int(variant.rstrip("x")), steps, repeats))
        gc.collect()  # the models of this variant went out of scope: free them before building the next
    return rows


def par_row(
    parity: ModuleType, gpt_mod: ModuleType, gen_mod: ModuleType, regions: int, steps: int | None, repeats: int
) -> list[object]:
    from bitscale.plugins.models.par.generate import generate
    from bitscale.plugins.models.par.gpt import PARGPT
    from bitscale.plugins.models.par.released import RELEASED_PAR, par_config

    cfg = replace(par_config("xl-4x"), ar_token_num=regions, spe_token_num=regions - 1)
    off = parity.official_par(gpt_mod, cfg).eval()
    randomize(off, 0)
    ours = PARGPT(cfg).eval()
    share_strict(ours, off, f"official PAR-XL-{regions}x")
    s = {"cfg": RELEASED_PAR["xl-4x"]["cfg"], "temperature": 1.0, "top_k": 0, "top_p": 1.0}
    labels = torch.arange(BATCH) * 111 % 1000
    n, k = cfg.block_size, cfg.ar_token_num
    total = 1 + (k - 1) + (n - k) // k  # prefill, sequential phase, parallel phase
    print(
        f"PAR-XL-{regions}x: {sum(p.numel() for p in off.parameters()) / 1e6:.0f}M parameters, "
        f"{min(steps or total, total)} of {total} model steps, sampler {s}",
        flush=True,
    )

    def official() -> None:
        torch.manual_seed(0)
        gen_mod.generate(
            off,
            labels,
            n,
            cfg_scale=s["cfg"],
            temperature=s["temperature"],
            top_k=s["top_k"],
            top_p=s["top_p"],
            sample_logits=True,
            ar_token_num=k,
            spe_token_num=k - 1,
        )

    def bitscale() -> None:
        generate(ours, labels, generator=torch.Generator().manual_seed(0), **s)

    def drop_official_cache() -> None:
        for layer in off.layers:  # the official cache stays attached after sampling (or after a Stop)
            layer.attention.kv_cache = None

    t_off, t_ours = compare(
        official, bitscale, off.layers[0], ours.layers[0], steps, repeats, after=drop_official_cache
    )
    tokens = min(n, k * max(0, t_off.steps - k) + min(t_off.steps, k))
    return row(
        f"PAR-XL-{regions}x (cfg 1.5){'' if regions == 4 else ', not released'}",
        f"{t_off.steps}/{total} steps ({tokens}/{n} tokens)",
        t_off,
        t_ours,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mar-repo", type=Path, help="local checkout of LTH14/mar")
    p.add_argument("--rar-repo", type=Path, help="local checkout of bytedance/1d-tokenizer")
    p.add_argument("--par-repo", type=Path, help="local checkout of YuqingWang1029/PAR")
    p.add_argument("--mar-iters", type=int, default=2, help="AR iterations timed (of 256; default 2)")
    p.add_argument("--rar-steps", type=int, default=None, help="steps timed (default: all 256)")
    p.add_argument("--par-steps", type=int, default=24, help="model steps timed (default 24; 0: all)")
    p.add_argument("--par-variants", default="4x", help="comma-separated: 4x (released PAR-XL), 16x")
    p.add_argument("--repeats", type=int, default=1, help="timed calls per sampler (best taken)")
    p.add_argument("--threads", type=int, default=1, help="torch threads, the same for both samplers")
    args = p.parse_args(argv)
    repos = {"--mar-repo": args.mar_repo, "--rar-repo": args.rar_repo, "--par-repo": args.par_repo}
    if not any(
        repos.values()
    ):  # ``make bench`` runs every benchmark bare: nothing to compare without the official code
        print("skipped: give --mar-repo, --rar-repo and/or --par-repo (local checkouts of the official code)")
        return 0
    for flag, repo in repos.items():
        if repo is not None and not repo.is_dir():
            print(
                f"error: {flag} {repo}: not a folder; pass a local checkout of the official repository", file=sys.stderr
            )
            return 2
    variants = [v.strip() for v in args.par_variants.split(",") if v.strip()]
    if any(v not in ("4x", "16x") for v in variants):
        print(f"error: --par-variants {args.par_variants!r}: use 4x and/or 16x", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    rows: list[list[object]] = []
    if args.rar_repo:
        rows += rar_rows(args.rar_repo, args.rar_steps, args.repeats)
    if args.mar_repo:
        rows += mar_rows(args.mar_repo, args.mar_iters, args.repeats)
    if args.par_repo:
        rows += par_rows(args.par_repo, variants, args.par_steps or None, args.repeats)
    print()
    print(
        f"batch {BATCH}, {args.threads} thread(s), best of {args.repeats}; CPU-s and wall s per image of the part timed"
    )
    print(
        tabulate(
            rows,
            headers=[
                "model",
                "timed",
                "official CPU-s/img",
                "bitscale CPU-s/img",
                "official s/img",
                "bitscale s/img",
                "ratio (CPU)",
            ],
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
