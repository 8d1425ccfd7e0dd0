"""Sampling throughput of rar-tiny and par-tiny (with and without the KV cache), and of bitscale's RAR/PAR
samplers against the official ones on the same small config in the same run.

    python benchmarks/bench_rar_par_sampling.py [--batch 32] [--repeats 2]
    python benchmarks/bench_rar_par_sampling.py --rar-repo ~/src/1d-tokenizer --par-repo ~/src/PAR

Tiny families: the shipped weights, tokens only (the tokenizer's decode is the same for every
sampler). Without the cache every step re-runs the model over the whole prefix. With official
checkouts: the parity configs of ``tools/parity_rar_par.py`` (random weights), batch 8, the
official ``RAR.generate`` / PAR ``generate`` vs bitscale's, both KV-cached; ratio = official
time / bitscale time (>= 1: bitscale is as fast or faster). Process CPU time per image is
reported, the steadier figure on a shared machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tabulate import tabulate

from bitscale.harness.plugin_loader import get_plugins


def cpu_time(fn: Callable[[], object], repeats: int) -> float:
    """Best-of-``repeats`` process CPU seconds of ``fn()``."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def tiny_rows(batch: int, repeats: int) -> list[list[object]]:
    rows = []
    labels = torch.arange(batch) % 10
    for name in ("rar-tiny", "par-tiny"):
        fam = get_plugins().models.get(name)
        for size in fam.sizes:
            model = fam.build(size, fam.Options(), torch.device("cpu"))
            with_cache = cpu_time(lambda: model.generate_tokens(labels, torch.Generator().manual_seed(0)), repeats)  # noqa: B023 - called at once, in this iteration
            without = cpu_time(
                lambda: model.generate_tokens(labels, torch.Generator().manual_seed(0), use_cache=False),  # noqa: B023 - called at once, in this iteration
                repeats,
            )
            rows.append(
                [
                    f"{name}/{size}",
                    f"{1e3 * with_cache / batch:.2f}",
                    f"{1e3 * without / batch:.2f}",
                    f"{without / with_cache:.2f}x",
                ]
            )
    return rows


def official_rows(rar_repo: Path | None, par_repo: Path | None, repeats: int) -> list[list[object]]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import parity_rar_par as parity

    from bitscale.plugins.models.checkpoint import load_strict
    from bitscale.plugins.models.par.generate import generate as par_generate
    from bitscale.plugins.models.par.gpt import PARGPT
    from bitscale.plugins.models.rar.generate import generate as rar_generate
    from bitscale.plugins.models.rar.gpt import RAR

    rows = []
    labels = torch.arange(8) % 10
    if rar_repo:
        parity._stub_einops()
        (rar_mod,) = parity._import_official(rar_repo, ["modeling.rar"])
        off = parity.official_rar(rar_mod, parity.RAR_SMALL).eval()
        parity.randomize(off, 0)
        ours = RAR(parity.RAR_SMALL).eval()
        load_strict(ours, off.state_dict(), "official RAR")
        s = parity.RAR_SAMPLER
        t_off = cpu_time(
            lambda: off.generate(
                labels,
                guidance_scale=s["guidance"],
                randomize_temperature=s["temperature"],
                guidance_scale_pow=s["guidance_pow"],
            ),
            repeats,
        )
        t_ours = cpu_time(lambda: rar_generate(ours, labels, generator=torch.Generator().manual_seed(0), **s), repeats)
        rows.append(
            [
                "RAR (d32, 16 tokens, guided)",
                f"{1e3 * t_off / 8:.2f}",
                f"{1e3 * t_ours / 8:.2f}",
                f"{t_off / t_ours:.2f}x",
            ]
        )
    if par_repo:
        gpt_mod, gen_mod = parity._import_official(
            par_repo, ["autoregressive.models.gpt", "autoregressive.models.generate"]
        )
        for variant, cfg in parity.PAR_SMALL.items():
            off = parity.official_par(gpt_mod, cfg).eval()
            parity.randomize(off, 0)
            ours = PARGPT(cfg).eval()
            load_strict(ours, off.state_dict(), "official PAR")
            s = parity.PAR_SAMPLER
            t_off = cpu_time(
                lambda off=off, cfg=cfg, s=s: gen_mod.generate(
                    off,
                    labels,
                    cfg.block_size,
                    cfg_scale=s["cfg"],
                    ar_token_num=cfg.ar_token_num,
                    spe_token_num=cfg.spe_token_num,
                ),
                repeats,
            )
            t_ours = cpu_time(
                lambda ours=ours, s=s: par_generate(ours, labels, generator=torch.Generator().manual_seed(0), **s),
                repeats,
            )
            rows.append(
                [
                    f"PAR-{variant} (d64, {cfg.block_size} tokens, cfg {s['cfg']})",
                    f"{1e3 * t_off / 8:.2f}",
                    f"{1e3 * t_ours / 8:.2f}",
                    f"{t_off / t_ours:.2f}x",
                ]
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--rar-repo", type=Path, help="local checkout of bytedance/1d-tokenizer (official sampler)")
    p.add_argument("--par-repo", type=Path, help="local checkout of YuqingWang1029/PAR (official sampler)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.set_grad_enabled(False)
    print(
        tabulate(
            tiny_rows(args.batch, args.repeats),
            headers=["model", "cached ms CPU/img", "uncached ms CPU/img", "cache speed-up"],
        )
    )
    if args.rar_repo or args.par_repo:
        print()
        print(
            tabulate(
                official_rows(args.rar_repo, args.par_repo, args.repeats),
                headers=["sampler (batch 8)", "official ms CPU/img", "bitscale ms CPU/img", "ratio"],
            )
        )


if __name__ == "__main__":
    main()
