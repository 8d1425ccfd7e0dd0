"""``bitscale run [EXPERIMENT.yaml]``: plan a grid, run the cells not yet stored, print the leaderboard."""

from __future__ import annotations

import argparse
import sys

from bitscale.cli.common import add_store_option, non_negative_float, non_negative_int, positive_int
from bitscale.harness.errors import ConfigError

# The executors of bitscale.harness.executors, named here so that parsing arguments imports no torch.
EXECUTORS = ("local", "ray")


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="run an experiment grid (default: the built-in quick grid)", description=__doc__)
    p.add_argument("experiment", nargs="?", help="experiment YAML file (default: the built-in quick grid)")
    add_store_option(p)
    p.add_argument("--dry-run", action="store_true", help="plan and list the cells, run nothing")
    p.add_argument("--retry-failed", action="store_true", help="run again the cells that failed before")
    p.add_argument(
        "--force",
        action="store_true",
        help="run every cell again even if stored, replacing its row (e.g. after editing a plugin "
        "installed with pip install -e, whose version did not change)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--format", default="github", help="leaderboard format printed at the end (default github)")
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        metavar="N",
        help="CPU threads for torch (default: torch's choice); 1 is fastest for tiny models on a "
        "busy machine; with --executor ray, the CPUs each cell asks for (default 1)",
    )
    x = p.add_argument_group("executor", "where cells run (docs/executors.md)")
    x.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="local: one cell after another in this process (default); ray: each cell a Ray task",
    )
    x.add_argument(
        "--ray-address",
        metavar="ADDR",
        default=None,
        help="Ray cluster to use: 'auto' (the one `ray start` made here) or ray://host:port; "
        "default: start a local Ray instance sized to this machine",
    )
    x.add_argument(
        "--gpus-per-cell",
        type=non_negative_float,
        default=None,
        metavar="G",
        help="GPUs each cell asks Ray for (default: the model family's, else 1 when the cluster has GPUs, else 0)",
    )
    x.add_argument(
        "--max-retries",
        type=non_negative_int,
        default=None,
        metavar="N",
        help="times Ray reruns a cell whose worker died before it is stored as failed (default 2)",
    )
    x.add_argument(
        "--sample-shards",
        type=positive_int,
        default=1,
        metavar="N",
        help="split each cell's sampling into N tasks, gathered and scored once; the images are the same for any N",
    )
    p.add_argument(
        "--keep-samples",
        metavar="DIR",
        default=None,
        help="keep each cell's images as DIR/<sha256>.npz (ADM layout), recorded on its run; "
        "`bitscale rescore` scores them again",
    )
    p.add_argument(
        "--zoo-weights",
        choices=("shipped", "trained"),
        default=None,
        help="tiny-zoo weights: shipped with bitscale, the same on every machine (default), or "
        "trained on this machine (`bitscale zoo train`; missing ones are trained first)",
    )
    p.add_argument(
        "--shard",
        type=shard_spec,
        default=None,
        metavar="I/N",
        help="run only shard I of N (1-based) of the grid, split by cell hash: N jobs (e.g. a Slurm "
        "job array) writing one store cover the grid once",
    )
    p.set_defaults(func=run)


def shard_spec(text: str) -> tuple[int, int]:
    """argparse ``type`` of ``--shard I/N``: two whole numbers, 1 <= I <= N."""
    index, sep, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N such as 2/8, got {text!r}") from None
    if not sep or n < 1 or not 1 <= i <= n:
        raise argparse.ArgumentTypeError(f"expected I/N with 1 <= I <= N, got {text!r}")
    return i, n


def _shard(plan, shard: tuple[int, int] | None) -> None:
    """Keep only shard I of N of ``plan``'s cells (``--shard I/N``)."""
    from bitscale.harness.cells import shard_of

    if shard:
        total = len(plan.cells)
        plan.cells = shard_of(plan.cells, *shard)
        print(f"shard {shard[0]}/{shard[1]}: {len(plan.cells)} of {total} cells", file=sys.stderr)


def _check_executor_options(args: argparse.Namespace) -> None:
    if args.executor == "local":
        for flag, value in (
            ("--ray-address", args.ray_address),
            ("--gpus-per-cell", args.gpus_per_cell),
            ("--max-retries", args.max_retries),
        ):
            if value is not None:
                raise ConfigError(f"{flag} applies to the Ray executor; add --executor ray or drop {flag}")
    if args.executor == "ray":
        from bitscale.harness.executors.ray_executor import check_address

        check_address(args.ray_address)
    if args.keep_samples is not None:
        from pathlib import Path

        folder = Path(args.keep_samples)
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"--keep-samples {folder}: exists and is not a folder; name a folder for the .npz files")


def _executor(args: argparse.Namespace):
    if args.executor == "ray":
        from bitscale.harness.executors.ray_executor import RayExecutor

        # A factory: Ray starts only when some cell is missing.
        return lambda: RayExecutor(
            args.ray_address,
            threads_per_cell=args.threads or 1,
            gpus_per_cell=args.gpus_per_cell,
            max_retries=2 if args.max_retries is None else args.max_retries,
        )
    return None  # the runner's default: local


def _warn_stale(plan, store, provenance) -> None:
    """Warn about stored cells computed before the last edit of an editable plugin they use."""
    from bitscale.harness.plugin_sources import stale_cells

    if not provenance.sources:
        return  # no plugin runs from a working tree: nothing can have changed under its version
    stale = stale_cells(plan.cells, store.started_at(c.hash for c in plan.cells), provenance)
    for name, cells in stale.items():
        print(
            f"bitscale: warning: plugin {name!r} is installed from a working tree and its code changed after "
            f"{len(cells)} stored cell(s) of this grid were computed (e.g. {cells[0].label}); they are reused "
            "as they are: rerun with --force to compute them again",
            file=sys.stderr,
        )


def _report_load_errors(plugins) -> None:
    for err in plugins.errors:
        print(f"bitscale: warning: plugin {err.name!r} ({err.dist}) was not loaded: {err.error}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    # Planning, the store and the leaderboard import no torch: a grid whose plan is in the metadata cache
    # (bitscale.harness.plan_cache) and whose cells are all stored is reprinted without loading a plugin.
    from bitscale.harness.artifacts import shipped
    from bitscale.harness.cells import pending_cells
    from bitscale.harness.plan_cache import plan_experiment
    from bitscale.harness.store import ResultStore
    from bitscale.leaderboard.render import render
    from bitscale.leaderboard.table import build_tables

    _check_executor_options(args)
    if args.zoo_weights is not None:
        shipped.use_trained(args.zoo_weights == "trained")  # the environment: training workers inherit it
    # --force recomputes cells, so it plans afresh too (a plan cache it does not trust is never the reason)
    grid = plan_experiment(args.experiment, use_cache=not args.force, on_plugins=_report_load_errors)
    plan = grid.plan
    for label, reason in plan.skipped:
        print(f"skip {label}: {reason}", file=sys.stderr)
    if args.dry_run:
        _shard(plan, args.shard)
        for c in plan.cells:
            print(f"{c.hash}  {c.label}  model_bits={c.model_bits:.3g} compute_bits={c.compute_bits:.3g}")
        print(f"{len(plan.cells)} cells planned")
        if plan.untrained:
            print(
                f"{len(plan.untrained)} of them on tiny-zoo weights not trained yet: their hashes "
                f"{'and the shard split ' if args.shard else ''}are provisional"
            )
        return 0
    store = ResultStore(args.store)  # a bad --store fails now, not after minutes of training
    if plan.untrained:  # never a cached plan: this process planned it with the plugins loaded
        from bitscale.harness.plugin_loader import get_plugins
        from bitscale.zoo.pretrain import plan_trained

        # Cells whose hashes name weights that do not exist yet: train them, then plan again.
        plan = plan_trained(plan, grid.experiment, get_plugins(), grid.source, progress=not args.no_progress)
    _shard(plan, args.shard)
    if not args.force:
        _warn_stale(plan, store, grid.provenance)
    todo = pending_cells(plan, store, grid.name, args.retry_failed, args.force)
    ran, ok, failed, stored = _compute(plan, store, grid.name, args) if todo else (0, 0, 0, len(plan.cells))
    print(f"{len(plan.cells)} cells: {ran} run ({ok} ok, {failed} failed), {stored} already in {store.url}")
    hashes = {c.hash for c in plan.cells}
    frame = store.frame()
    frame = frame[frame["cell_hash"].isin(hashes)]
    print()
    print(render(build_tables(frame, "fid", grid.sizes, protocols=store.protocols()), args.format))
    failed_rows = frame[frame["status"] == "failed"]
    if len(failed_rows):
        for _, r in failed_rows.iterrows():
            print(f"FAILED {r['family']}/{r['size']} {r['precision']} {r['method']}", file=sys.stderr)
        print(
            f"bitscale: {len(failed_rows)} cell(s) failed (tracebacks are in the store); "
            "fix the plugin and rerun with --retry-failed",
            file=sys.stderr,
        )
        return 1
    return 0


def _compute(plan, store, experiment: str, args: argparse.Namespace) -> tuple[int, int, int, int]:
    """Run the missing cells of ``plan`` (this is where torch and the plugins are imported); (ran, ok, failed,
    found stored)."""
    from bitscale.harness.plugin_loader import get_plugins
    from bitscale.harness.runner import run_plan

    if args.threads is not None and args.executor == "local":
        import torch

        # Tiny models do small matmuls: threads that wait on each other at every op cost more than
        # they gain once other jobs share the cores (measured 10x+ slower QAT steps on 2 busy cores).
        torch.set_num_threads(args.threads)
    summary = run_plan(
        plan,
        store,
        get_plugins(),
        experiment=experiment,
        retry_failed=args.retry_failed,
        force=args.force,
        progress=not args.no_progress,
        executor=_executor(args),
        sample_shards=args.sample_shards,
        keep_samples=args.keep_samples,
    )
    return summary.ran, summary.ok, summary.failed, summary.skipped_done
