"""Tiny-zoo training workers die with their parent, even when the parent is killed with SIGKILL."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

FAMILY = textwrap.dedent("""
    import os, time
    from pathlib import Path

    class Blocking:
        '''A trainable family whose training never ends: it notes its pid and sleeps.'''
        name = "blocking"

        def __init__(self, folder):
            self.folder = folder

        def train(self, size, options, force=False):
            Path(self.folder, f"{size}.pid").write_text(str(os.getpid()))
            time.sleep(600)
""")

PARENT = textwrap.dedent("""
    import sys
    from blockingfamily import Blocking
    from bitscale.zoo.parallel import train_units
    from bitscale.zoo.units import TrainingUnit

    if __name__ == "__main__":  # spawned workers import this file again
        family = Blocking(sys.argv[1])
        train_units([TrainingUnit(f"blocking/{s}", family, None, s) for s in ("a", "b")], jobs=2, progress=False)
""")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")  # a zombie has exited; only its parent's bookkeeping remains


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's prctl")
def test_sigkill_of_the_parent_takes_its_training_workers_with_it(tmp_path):
    (tmp_path / "blockingfamily.py").write_text(FAMILY)
    (tmp_path / "parent.py").write_text(PARENT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    parent = subprocess.Popen([sys.executable, str(tmp_path / "parent.py"), str(tmp_path)], env=env)
    pids: list[int] = []
    try:
        # Deterministic point: both workers are inside training (their pid files exist).
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(pids) < 2 and parent.poll() is None:
            pids = [int(p.read_text()) for p in tmp_path.glob("*.pid") if p.read_text()]
            time.sleep(0.1)
        assert len(pids) == 2, "the workers never started training"
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.1)
        orphans = [p for p in pids if _alive(p)]
        assert not orphans, f"workers {orphans} outlived their killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
        for pid in pids:  # only the workers this test started
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
