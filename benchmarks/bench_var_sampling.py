"""Sampling throughput of the tiny VAR zoo, with and without the KV cache.

    python benchmarks/bench_var_sampling.py [--batch 64] [--repeats 3] [--threads N] [--weights zoo|random]
                                            [--patch-nums 1,2,3,4,5,6,8,10,13,16]

Without the cache every scale re-runs the transformer over the whole prefix (under the
block-causal mask); with it each scale only runs its own tokens. Cost does not depend on the
weight values, so ``--weights random`` (the default when the zoo is not trained yet) measures the
same thing without training. ``--patch-nums`` swaps in another scale schedule (random weights,
tiny widths) to show how the gap grows with the number of scales: the tiny zoo has only three
(21 tokens), the released 256px models ten (680 tokens). Both wall time and process CPU time are reported: on a shared
machine the CPU-time figure is the steadier one.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch
from tabulate import tabulate

from bitscale.harness.artifacts import cache
from bitscale.plugins.models.var.images import digits_source
from bitscale.plugins.models.var.model import VarModel
from bitscale.plugins.models.var.tiny import TINY_SAMPLER, TINY_VAE, VarTinyFamily, VarTinyOptions, tiny_var_config
from bitscale.plugins.models.var.transformer import VAR
from bitscale.plugins.models.var.vqvae import VQVAE


def _model(size: str, weights: str, patch_nums: tuple[int, ...] | None) -> tuple[VarModel, str]:
    fam, opts = VarTinyFamily(), VarTinyOptions()
    _, name = fam.artifact_names(size, opts)
    if patch_nums is None and (weights == "zoo" or (weights == "auto" and cache.load_manifest(name) is not None)):
        return fam.build(size, opts, torch.device("cpu")), "zoo"
    torch.manual_seed(0)
    var_cfg, vae_cfg = tiny_var_config(size), TINY_VAE
    if patch_nums is not None:
        var_cfg = dataclasses.replace(var_cfg, patch_nums=patch_nums)
        vae_cfg = dataclasses.replace(vae_cfg, patch_nums=patch_nums)
    return VarModel(VAR(var_cfg), VQVAE(vae_cfg), "digits16", TINY_SAMPLER, digits_source()), "random"


def _rate(model: VarModel, batch: int, repeats: int, use_kv_cache: bool) -> tuple[float, float]:
    """(images per wall second, images per CPU second), after one warm-up batch."""
    labels = torch.arange(batch) % model.num_classes
    gen = torch.Generator().manual_seed(0)
    model.sample(labels, gen, use_kv_cache=use_kv_cache)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        model.sample(labels, gen, use_kv_cache=use_kv_cache)
    n = batch * repeats
    return n / (time.perf_counter() - wall), n / (time.process_time() - cpu)


def main(argv: list[str] | None = None) -> None:
    """Print a table of images/s per tiny size, with and without the KV cache."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--weights", choices=("auto", "zoo", "random"), default="auto")
    p.add_argument("--patch-nums", default=None, help="comma-separated scales (random weights)")
    args = p.parse_args(argv)
    patch_nums = tuple(int(x) for x in args.patch_nums.split(",")) if args.patch_nums else None
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for size in VarTinyFamily.sizes:
        model, source = _model(size, args.weights, patch_nums)
        kv_wall, kv_cpu = _rate(model, args.batch, args.repeats, True)
        no_wall, no_cpu = _rate(model, args.batch, args.repeats, False)
        rows.append(
            [size, model.num_params(), source, kv_wall, no_wall, kv_wall / no_wall, kv_cpu, no_cpu, kv_cpu / no_cpu]
        )
    headers = [
        "size",
        "params",
        "weights",
        "KV img/s",
        "no-KV img/s",
        "ratio",
        "KV img/cpu-s",
        "no-KV img/cpu-s",
        "cpu ratio",
    ]
    scales = patch_nums or TINY_VAE.patch_nums
    print(
        f"batch {args.batch}, {args.repeats} repeats, {torch.get_num_threads()} threads, scales {scales} "
        f"(L={sum(p * p for p in scales)}), sampler {TINY_SAMPLER}"
    )
    print(tabulate(rows, headers=headers, floatfmt=".1f", intfmt=","))


if __name__ == "__main__":
    main()
