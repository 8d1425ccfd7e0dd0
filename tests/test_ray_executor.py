"""The Ray executor on a real local Ray instance (2 CPUs, started once for this module).

Skipped when Ray is not installed (it is in the ``dev`` extra, so ``make test`` runs these).
"""

import os
from pathlib import Path

import pytest
import yaml

ray = pytest.importorskip("ray")

import ray_plugins  # noqa: E402  (tests/ is on the path; Ray workers import it by name)

from bitscale.cli import main  # noqa: E402
from bitscale.harness.store import ResultStore  # noqa: E402

TESTS = str(Path(__file__).parent)


@pytest.fixture(scope="module", autouse=True)
def ray_instance():
    # Workers inherit the environment of the Ray instance: put tests/ on their path for ray_plugins.
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (TESTS, before) if p)
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before
    yield
    ray.shutdown()


def _experiment(tmp_path, quantizers, precisions, sizes, num_samples, batch_size) -> str:
    path = tmp_path / "grid.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "ray-test",
                "models": [{"family": "toy", "sizes": sizes}],
                "quantizers": quantizers,
                "precisions": precisions,
                "seeds": [0],
                "evaluation": {"num_samples": num_samples, "calibration_batches": 1, "batch_size": batch_size},
            }
        )
    )
    return str(path)


def _results(url):
    frame = ResultStore(url).frame()
    return {h: (s, f) for h, s, f in zip(frame["cell_hash"], frame["status"], frame["fid"])}


def test_a_grid_on_ray_matches_the_local_run_cell_for_cell(register_plugin, tmp_path, capsys):
    register_plugin(ray_plugins.plugin())
    grid = _experiment(
        tmp_path,
        ["rtn"],
        ["W16A16", "W8A16", "W4A16", "W3A16", "W8A8", "W4A8"],
        ["d1", "d2"],
        num_samples=30,
        batch_size=10,
    )
    local, remote = f"sqlite:///{tmp_path / 'local.db'}", f"sqlite:///{tmp_path / 'ray.db'}"
    common = ["--no-progress", "--threads", "1"]
    assert main(["run", grid, "--store", local, "--keep-samples", str(tmp_path / "local"), *common]) == 0
    # Three sample shards per cell, i.e. 36 shard tasks + 12 gather-and-score tasks.
    assert (
        main(
            [
                "run",
                grid,
                "--store",
                remote,
                "--executor",
                "ray",
                "--sample-shards",
                "3",
                "--keep-samples",
                str(tmp_path / "ray"),
                *common,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert sum(ln.startswith("  toy/") and ": FID " in ln for ln in out.splitlines()) == 24
    a, b = _results(local), _results(remote)
    assert len(a) == 12 and a == b  # same cell hashes, all ok, the same FIDs to the last bit
    # Byte-identical images: each cell's content-addressed sample file has the same name.
    kept = [{r.cell_hash: Path(r.samples).name for r in ResultStore(url).runs()} for url in (local, remote)]
    assert len(kept[0]) == 12 and kept[0] == kept[1]
    run = ResultStore(remote).runs()[0]
    assert run.timings["shards"] == 3 and run.device.startswith("cpu")
    # Resuming on Ray runs nothing (and starts no task).
    assert main(["run", grid, "--store", remote, "--executor", "ray", *common]) == 0
    assert "0 run (0 ok, 0 failed), 12 already in" in capsys.readouterr().out


def test_a_killed_worker_is_retried_and_every_cell_is_stored_once(register_plugin, tmp_path, capsys):
    register_plugin(ray_plugins.plugin())
    marker = tmp_path / "killed-once"
    grid = _experiment(
        tmp_path,
        [{"name": "fixture-kill-once", "options": {"marker": str(marker)}}],
        ["W16A16", "W8A16", "W4A16"],
        ["d1"],
        num_samples=20,
        batch_size=20,
    )
    url = f"sqlite:///{tmp_path / 's.db'}"
    assert main(["run", grid, "--store", url, "--executor", "ray", "--no-progress", "--max-retries", "1"]) == 0
    assert marker.exists()  # a worker really was SIGKILLed mid-cell
    store = ResultStore(url)
    runs = store.runs()
    assert len(runs) == 3 and len({r.cell_hash for r in runs}) == 3 and {r.status for r in runs} == {"ok"}


def test_a_worker_killed_beyond_its_retries_fails_only_its_cell(register_plugin, tmp_path, capsys, monkeypatch):
    register_plugin(ray_plugins.plugin())
    # A marker in a folder that does not exist: every attempt dies before it can write it.
    grid = _experiment(
        tmp_path,
        [{"name": "fixture-kill-once", "options": {"marker": str(tmp_path / "no" / "m")}}, "rtn"],
        ["W16A16", "W4A16"],
        ["d1"],
        num_samples=20,
        batch_size=20,
    )
    url = f"sqlite:///{tmp_path / 's.db'}"
    assert main(["run", grid, "--store", url, "--executor", "ray", "--no-progress", "--max-retries", "0"]) == 1
    by_method = {r.method: r for r in ResultStore(url).runs()}
    assert by_method["rtn"].status == "ok" and by_method["fp16"].status == "ok"
    assert by_method["fixture-kill-once"].status == "failed"
    assert "worker running this cell was lost 1 time(s)" in by_method["fixture-kill-once"].error


DRIVER = f"""
import sys
sys.path.insert(0, {TESTS!r})
import ray_plugins
from bitscale.cli import main
from bitscale.harness.plugin_loader import load_plugins, set_plugins
set_plugins(load_plugins([("test-plugin", ray_plugins.plugin())], entrypoints=False))  # as register_plugin does
sys.exit(main(["run", sys.argv[1], "--store", sys.argv[2], "--executor", "ray", "--ray-address", sys.argv[3],
               "--no-progress"]))
"""


def test_ctrl_c_on_the_driver_keeps_finished_cells_and_the_rerun_resumes(register_plugin, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    grid = _experiment(
        tmp_path, ["rtn"], ["W16A16", "W8A16", "W4A16", "W3A16"], ["d1", "d2"], num_samples=200, batch_size=100
    )
    url, script, out = f"sqlite:///{tmp_path / 's.db'}", tmp_path / "driver.py", tmp_path / "out.txt"
    script.write_text(DRIVER)
    address = ray.get_runtime_context().gcs_address  # a second driver on this module's Ray instance
    with open(out, "w") as fh:
        # SIGINT as a terminal's Ctrl-C delivers it (a shell may start children with it ignored).
        p = subprocess.Popen(
            [sys.executable, str(script), grid, url, address],
            stdout=fh,
            stderr=subprocess.DEVNULL,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        deadline = time.time() + 180
        while time.time() < deadline and ": FID " not in out.read_text() and p.poll() is None:
            time.sleep(0.2)
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=120) == 130
    printed = [ln for ln in out.read_text().splitlines() if ": FID " in ln]
    stored = ResultStore(url).runs()
    assert 1 <= len(stored) == len(printed) < 8  # every cell reported finished was kept, nothing more
    register_plugin(ray_plugins.plugin())
    assert main(["run", grid, "--store", url, "--executor", "ray", "--no-progress"]) == 0
    runs = ResultStore(url).runs()
    assert len(runs) == 8 and len({r.cell_hash for r in runs}) == 8


def test_a_cell_bigger_than_the_cluster_is_refused_before_anything_runs(register_plugin, tmp_path, capsys):
    register_plugin(ray_plugins.plugin())
    grid = _experiment(tmp_path, ["rtn"], ["W16A16"], ["d1"], num_samples=20, batch_size=20)
    url = f"sqlite:///{tmp_path / 's.db'}"
    assert main(["run", grid, "--store", url, "--executor", "ray", "--threads", "3"]) == 2
    assert "asks for 3 CPUs but the Ray cluster has 2" in capsys.readouterr().err
    assert main(["run", grid, "--store", url, "--executor", "ray", "--gpus-per-cell", "1"]) == 2
    assert "pass --gpus-per-cell 0" in capsys.readouterr().err
    assert ResultStore(url).count() == 0
    # An address where no Ray head listens: one line at once, before the store is even opened.
    other = tmp_path / "other.db"
    assert main(["run", grid, "--store", str(other), "--executor", "ray", "--ray-address", "127.0.0.1:9"]) == 2
    assert "--ray-address 127.0.0.1:9: cannot connect" in capsys.readouterr().err
    assert not other.exists()
