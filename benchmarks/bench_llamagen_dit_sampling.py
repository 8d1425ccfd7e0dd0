"""Sampling throughput of the tiny LlamaGen and DiT zoos (LlamaGen with and without the KV cache).

    python benchmarks/bench_llamagen_dit_sampling.py [--batch 32] [--repeats 2] [--threads N]
                                                     [--weights auto|zoo|random] [--grid 16]

LlamaGen without the cache re-runs the GPT over the whole prefix for every token; with it each
step runs one token. Cost does not depend on the weight values, so ``--weights random`` (the
default when the zoo is not trained yet) measures the same thing without training. ``--grid``
swaps in a larger token grid (random weights) to show how the gap grows with sequence length:
the tiny zoo has 16 tokens, released 384px models 576. DiT is timed with its default sampler
(DDIM, 50 steps) and with the official 250-step DDPM. Wall time and process CPU time are both
reported; on a shared machine the CPU-time figures are the steadier ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable

import torch
from tabulate import tabulate

from bitscale.harness.artifacts import cache
from bitscale.plugins.models.dit.dit import DiT
from bitscale.plugins.models.dit.model import DiTModel
from bitscale.plugins.models.dit.tiny import DEFAULT_SAMPLER as DIT_SAMPLER
from bitscale.plugins.models.dit.tiny import SIZES as DIT_SIZES
from bitscale.plugins.models.dit.tiny import DiTTinyFamily
from bitscale.plugins.models.dit.vae import TINY_VAE_CONFIG, build_vae
from bitscale.plugins.models.llamagen.gpt import GPT
from bitscale.plugins.models.llamagen.model import LlamaGenModel
from bitscale.plugins.models.llamagen.tiny import DEFAULT_SAMPLER as LG_SAMPLER
from bitscale.plugins.models.llamagen.tiny import SIZES as LG_SIZES
from bitscale.plugins.models.llamagen.tiny import TOKENIZER, LlamaGenTinyFamily
from bitscale.plugins.models.llamagen.vq import VQModel


def _use_zoo(family: str, size: str, weights: str) -> bool:
    return weights == "zoo" or (weights == "auto" and cache.load_manifest(f"{family}/{size}") is not None)


def _llamagen(size: str, weights: str, grid: int) -> tuple[LlamaGenModel, str]:
    fam = LlamaGenTinyFamily()
    if grid == 4 and _use_zoo(fam.name, size, weights):
        return fam.build(size, fam.Options(), torch.device("cpu")), "zoo"
    torch.manual_seed(0)
    cfg = dataclasses.replace(LG_SIZES[size][0], block_size=grid * grid)
    return LlamaGenModel(GPT(cfg).eval(), VQModel(TOKENIZER).eval(), "digits16", LG_SAMPLER), "random"


def _dit(size: str, weights: str) -> tuple[DiTModel, str]:
    fam = DiTTinyFamily()
    if _use_zoo(fam.name, size, weights):
        return fam.build(size, fam.Options(), torch.device("cpu")), "zoo"
    torch.manual_seed(0)
    vae = build_vae(TINY_VAE_CONFIG).eval()
    return DiTModel(DiT(DIT_SIZES[size][0]).eval(), vae, "digits16", DIT_SAMPLER, 1.0), "random"


def _rate(run: Callable[[torch.Tensor, torch.Generator], object], batch: int, repeats: int) -> tuple[float, float]:
    """(images per wall second, images per CPU second), after one warm-up batch."""
    labels = torch.arange(batch) % 10
    gen = torch.Generator().manual_seed(0)
    run(labels, gen)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        run(labels, gen)
    n = batch * repeats
    return n / (time.perf_counter() - wall), n / (time.process_time() - cpu)


def main(argv: list[str] | None = None) -> None:
    """Print images/s per tiny size: LlamaGen with/without KV cache, DiT with DDIM-50 and DDPM-250."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--weights", choices=("auto", "zoo", "random"), default="auto")
    p.add_argument("--grid", type=int, default=4, help="LlamaGen token grid side (random weights if not 4)")
    p.add_argument("--skip-llamagen", action="store_true")
    p.add_argument("--skip-dit", action="store_true")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"batch {args.batch}, {args.repeats} repeats, {torch.get_num_threads()} threads")

    if not args.skip_llamagen:
        _bench_llamagen(args)
    if not args.skip_dit:
        _bench_dit(args)


def _bench_llamagen(args: argparse.Namespace) -> None:
    rows = []
    for size in LlamaGenTinyFamily.sizes:
        model, source = _llamagen(size, args.weights, args.grid)

        def run(labels: torch.Tensor, gen: torch.Generator, cache_on: bool) -> None:
            with torch.no_grad():
                model.tokenizer.decode_code(model.generate_tokens(labels, gen, use_cache=cache_on))  # noqa: B023 - called within this iteration

        kv = _rate(lambda lab, gen: run(lab, gen, True), args.batch, args.repeats)
        no = _rate(lambda lab, gen: run(lab, gen, False), args.batch, args.repeats)
        rows.append([size, model.num_params(), source, kv[0], no[0], kv[0] / no[0], kv[1], no[1], kv[1] / no[1]])
    print(f"\nllamagen-tiny: {args.grid * args.grid} tokens, sampler {LG_SAMPLER}")
    print(
        tabulate(
            rows,
            headers=[
                "size",
                "params",
                "weights",
                "KV img/s",
                "no-KV img/s",
                "ratio",
                "KV img/cpu-s",
                "no-KV img/cpu-s",
                "cpu ratio",
            ],
            floatfmt=".2f",
            intfmt=",",
        )
    )


def _bench_dit(args: argparse.Namespace) -> None:
    fast_name = f"{DIT_SAMPLER['sampler'].upper()}-{DIT_SAMPLER['steps']}"
    rows = []
    for size in DiTTinyFamily.sizes:
        model, source = _dit(size, args.weights)
        fast = _rate(model.sample, args.batch, args.repeats)
        model.sampler = {**model.sampler, "sampler": "ddpm", "steps": 250}
        official = _rate(model.sample, args.batch, 1)
        rows.append([size, model.num_params(), source, fast[0], official[0], fast[1], official[1]])
    print(f"\ndit-tiny: default sampler {DIT_SAMPLER} vs official DDPM-250 (cfg {DIT_SAMPLER['cfg']})")
    print(
        tabulate(
            rows,
            headers=[
                "size",
                "params",
                "weights",
                f"{fast_name} img/s",
                "DDPM-250 img/s",
                f"{fast_name} img/cpu-s",
                "DDPM-250 img/cpu-s",
            ],
            floatfmt=".2f",
            intfmt=",",
        )
    )


if __name__ == "__main__":
    main()
