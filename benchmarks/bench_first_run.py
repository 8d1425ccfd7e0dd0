"""Wall time of `make run`'s command with an empty cache and store (cold) and again (warm).

What `make run` does after the dependencies are installed: `bitscale run --threads 1`, the quick
grid (18 var-tiny cells) on the shipped tiny zoo. Cold = a fresh ``BITSCALE_CACHE`` and store:
nothing to train, the reference statistics of the digits protocol computed once, every cell
run; warm = the same command again, every cell already stored (plan, check, reprint).

Reference measured in the same run: the start-up of a Python process that imports torch, the
floor of any bitscale command that plans a grid. Targets (issue 10): cold < 60 s, warm < 10 s
on 2 cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BITSCALE = [sys.executable, "-m", "bitscale"]


def timed(cmd: list[str], cwd: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bitscale-first-run-") as root:
        env = {**os.environ, "BITSCALE_CACHE": str(Path(root) / "cache"), "TQDM_DISABLE": "1"}
        env.pop("BITSCALE_ZOO_WEIGHTS", None)  # the shipped weights, as make run uses them
        torch_import = timed([sys.executable, "-c", "import torch"], root, env)
        cold = timed([*BITSCALE, "run", "--threads", "1"], root, env)
        warm = timed([*BITSCALE, "run", "--threads", "1"], root, env)
    print(f"reference: python -c 'import torch'   {torch_import:6.2f} s")
    for label, seconds, target in (("cold (empty cache and store)", cold, 60), ("warm (every cell stored)", warm, 10)):
        print(
            f"make run, {label:28s} {seconds:6.2f} s  ({seconds / torch_import:5.1f}x the reference)  "
            f"target < {target} s"
        )
    print(f"load average: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
