"""``bitscale check`` against a 1,000-cell baseline (target: under 2 s, no re-run).

Times the gate in-process (read and validate the baseline, read the store, compare, write the
markdown summary) and, for reference, the whole ``bitscale check`` command in a subprocess
(interpreter start-up and CLI imports included). Store and baseline creation are not timed.
Usage: python benchmarks/bench_check.py [--strict]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _bench_leaderboard_common import reference_seconds, report  # noqa: E402

from bitscale.harness.store import ResultStore  # noqa: E402
from bitscale.testing import synthetic  # noqa: E402

GRID = synthetic.SyntheticGrid(
    families={f"fam{i}": {f"d{d}": 10_000 * d for d in range(1, 13)} for i in range(4)},
    methods={"rtn": 1.0, "gptq": 0.8, "smoothquant": 0.9, "qat+topkld": 0.5},
    precisions=["W16A16", "W8A16", "W4A16", "W3A16", "W8A8", "W4A8"],
    seeds=[0, 1, 2],
)


def run_check(baseline_path: Path, store_url: str) -> tuple[int, int]:
    from bitscale.leaderboard.baseline import read_baseline
    from bitscale.leaderboard.gate import check
    from bitscale.leaderboard.gate_summary import summary_markdown
    from bitscale.leaderboard.results import load_results, open_store

    baseline = read_baseline(baseline_path)
    results = load_results(open_store(store_url), baseline.metric)
    result = check(baseline, results)
    summary_markdown(result, baseline, str(baseline_path), store_url)
    return len(baseline.cells), result.exit_code


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--strict", action="store_true", help="exit 1 when over the target")
    args = ap.parse_args()
    from bitscale.leaderboard.baseline import export_baseline, write_baseline
    from bitscale.leaderboard.results import load_results

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        store = ResultStore(url)
        synthetic.bulk_fill(store, GRID)
        baseline_path = Path(tmp) / "baseline.json"
        write_baseline(export_baseline(load_results(store)), baseline_path)
        ref = reference_seconds()
        t = time.perf_counter()
        cells, code = run_check(baseline_path, url)
        inproc = time.perf_counter() - t
        assert code == 0, "the baseline's own results must pass"
        t = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "bitscale", "check", "--baseline", str(baseline_path), "--store", url],
            capture_output=True,
            text=True,
        )
        cli = time.perf_counter() - t
        assert proc.returncode == 0, proc.stderr
        ok = report(f"check {cells:,} baseline cells ({store.count():,} runs), in-process", inproc, 2.0, ref)
        print(f"  whole `bitscale check` command incl. interpreter start-up and CLI imports: {cli:.2f} s")
    return 0 if ok or not args.strict else 1


if __name__ == "__main__":
    sys.exit(main())
