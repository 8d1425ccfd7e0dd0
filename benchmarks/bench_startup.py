"""Start-up of the ``bitscale`` command: whole processes, as a user runs them (issue 13 item 3).

Each command runs N times as a fresh process; the figure is the median wall time and its ratio to
``python -c pass`` measured in the same run (the machine is shared: the ratio is the steadier figure).
Targets on an idle 2-core machine: ``--help`` < 0.3 s, ``leaderboard`` on a 1,000-run store < 1.5 s,
``plugins list`` < 2 s, a no-op re-run of the quick grid (every cell stored) < 2 s.

Set-up, not timed: a synthetic store of about 1,000 runs, and one real run of the quick grid into a
second store (minutes: it computes 18 cells; it also fills the metadata cache), both in a temporary
folder with its own cache. ``plugins list`` and the no-op ``run`` are timed twice: as a user's second
command runs them (plugin metadata and plan read from the metadata cache), and with the cache off
(``BITSCALE_NO_METADATA_CACHE=1``: every plugin loaded, as the first command after any change).
Usage: python benchmarks/bench_startup.py [--runs N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {
    "bitscale --help": 0.3,
    "bitscale leaderboard (1,000 runs)": 1.5,
    "bitscale plugins list": 2.0,
    "bitscale run (quick grid, all stored)": 2.0,
}
#: The same two commands with the metadata cache off: what a first command after any change pays
#: (it loads every plugin, and with them torch).
UNCACHED = {
    "bitscale plugins list": "plugins list, cache off",
    "bitscale run (quick grid, all stored)": "run (all stored), cache off",
}


def timed(cmd: list[str], env: dict[str, str], runs: int, cwd: Path) -> tuple[float, float, float]:
    """(median wall, max wall, median CPU) seconds of ``runs`` whole-process runs of ``cmd`` (which must
    succeed). CPU = user + system time of the process: on a busy machine, closer to what an idle one shows."""
    times, cpus = [], []
    for _ in range(runs):
        before = os.times()
        t = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd)
        times.append(time.perf_counter() - t)
        after = os.times()
        cpus.append(after.children_user + after.children_system - before.children_user - before.children_system)
    return statistics.median(times), max(times), statistics.median(cpus)


def synthetic_store(path: Path) -> int:
    from bitscale.harness.store import ResultStore
    from bitscale.testing import synthetic

    grid = synthetic.SyntheticGrid(
        families={"fam": {f"d{d}": 60_000 * d * d for d in (2, 3, 4, 6)}},
        methods={"rtn": 1.0, "gptq": 0.8},
        seeds=list(range(23)),
    )
    store = ResultStore(f"sqlite:///{path}")
    n = synthetic.bulk_fill(store, grid)
    store.dispose()
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7, help="processes per command (median)")
    ap.add_argument("--keep", type=Path, default=None, help="folder for the stores (reused when present)")
    args = ap.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench-startup-"))
    folder.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "BITSCALE_CACHE": str(folder / "cache"),
        "OMP_NUM_THREADS": "1",
        "TQDM_DISABLE": "1",
        "BITSCALE_NO_ENTRYPOINTS": "1",
    }
    bitscale = [sys.executable, "-m", "bitscale"]

    synthetic_db = folder / "synthetic.db"
    runs = synthetic_store(synthetic_db) if not synthetic_db.exists() else None
    quick_db = folder / "quick.db"
    quick = [*bitscale, "run", "--store", str(quick_db), "--threads", "1", "--no-progress"]
    t = time.perf_counter()
    # cwd: the store folder, so that `python -m bitscale` imports the bitscale of PYTHONPATH or the
    # installed one, never a checkout that happens to be the current folder
    subprocess.run(quick, env=env, check=True, stdout=subprocess.DEVNULL, cwd=folder)  # computes what is missing
    setup = time.perf_counter() - t

    commands = {
        "bitscale --help": [*bitscale, "--help"],
        "bitscale leaderboard (1,000 runs)": [*bitscale, "leaderboard", "--store", str(synthetic_db)],
        "bitscale plugins list": [*bitscale, "plugins", "list"],
        "bitscale run (quick grid, all stored)": quick,
    }
    ref, ref_max, ref_cpu = timed([sys.executable, "-c", "pass"], env, args.runs, folder)
    load = os.getloadavg()
    import bitscale

    print(f"bitscale from {Path(bitscale.__file__).parent}")
    print(
        f"machine: {os.cpu_count()} CPUs, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
        f"(1/5/15 min); python {sys.version.split()[0]}; {args.runs} runs per command, median"
    )
    if runs is not None:
        print(f"synthetic store: {runs} runs; quick grid set-up run: {setup:.1f} s")
    print(
        f"{'command':40s} {'median s':>9s} {'max s':>7s} {'x python':>9s} {'CPU s':>7s} {'x python':>9s} "
        f"{'target s':>9s}"
    )
    print(f"{'python -c pass (reference)':40s} {ref:9.3f} {ref_max:7.3f} {1.0:9.1f} {ref_cpu:7.3f} {1.0:9.1f}")
    rows = [(name, cmd, env, f"{TARGETS[name]:9.1f}") for name, cmd in commands.items()]
    off = {**env, "BITSCALE_NO_METADATA_CACHE": "1"}
    rows += [(f"bitscale {label}", commands[name], off, f"{'-':>9s}") for name, label in UNCACHED.items()]
    for name, cmd, cmd_env, target in rows:
        med, worst, cpu = timed(cmd, cmd_env, args.runs, folder)
        print(
            f"{name:40s} {med:9.3f} {worst:7.3f} {med / ref:9.1f} {cpu:7.3f} {cpu / max(ref_cpu, 1e-3):9.1f} {target}",
            flush=True,
        )
    load = os.getloadavg()
    print(f"load average after: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
