"""Several `bitscale run` jobs on one store: `--shard I/N` partitions a grid, two drivers duplicate nothing."""

import re
import subprocess
import sys
import textwrap

import pytest
import sqlalchemy as sa
from test_runner import _exp, fixture_plugin

from bitscale.cli import main
from bitscale.harness.config import load_experiment
from bitscale.harness.planner import plan_grid, shard_of
from bitscale.harness.plugin_loader import get_plugins
from bitscale.harness.store import ResultStore

EXPERIMENT = textwrap.dedent("""
    name: multi
    models: [{family: toy, sizes: [d1]}]
    quantizers: [rtn]
    precisions: [W16A16, W8A16, W4A16]
    seeds: [0, 1]
    evaluation: {num_samples: 100, calibration_batches: 1, batch_size: 100}
""")


def test_shards_partition_the_grid_whatever_is_missing(register_plugin):
    register_plugin(fixture_plugin())
    exp = _exp(["rtn"], ["W16A16", "W8A16", "W6A16", "W4A16", "W3A16"], seeds=range(6))
    cells = plan_grid(exp, get_plugins()).cells
    shards = [shard_of(cells, i, 3) for i in (1, 2, 3)]
    hashes = [{c.hash for c in s} for s in shards]
    assert sum(map(len, hashes)) == len(cells) == 30 and set().union(*hashes) == {c.hash for c in cells}
    assert all(len(s) > 0 for s in shards)
    # A job that starts after others finished some cells still gets the same cells: the rule looks
    # at each cell's hash only, never at what is missing.
    later = cells[7:]
    assert [c.hash for c in shard_of(later, 2, 3)] == [c.hash for c in shards[1] if c in later]
    assert shard_of(cells, 1, 1) == cells


@pytest.mark.parametrize("value", ["0/3", "4/3", "3", "a/3", "1/0", "-1/2", "1/2/3", ""])
def test_bad_shard_values_are_input_errors(value, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", f"--shard={value}", "--store", str(tmp_path / "s.db")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "argument --shard: expected I/N" in err and "Traceback" not in err
    assert not (tmp_path / "s.db").exists()


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_shard_jobs_cover_the_grid_once(register_plugin, store_url, tmp_path, capsys):
    register_plugin(fixture_plugin())
    exp = tmp_path / "multi.yaml"
    exp.write_text(EXPERIMENT)
    for i in (1, 2, 3):  # a job array: every job the same command with its own index
        assert main(["run", str(exp), "--store", store_url, "--no-progress", "--shard", f"{i}/3"]) == 0
    out = capsys.readouterr()
    assert sa.engine.make_url(store_url).password not in out.out + out.err
    frame = ResultStore(store_url).frame()
    planned = {c.hash for c in plan_grid(load_experiment(exp), get_plugins()).cells}
    assert len(frame) == 6 and frame["cell_hash"].is_unique and set(frame["status"]) == {"ok"}
    assert set(frame["cell_hash"]) == planned


DRIVER = textwrap.dedent("""
    import sys, types
    from bitscale import hookimpl
    from bitscale.harness import plugin_loader as plugins
    from bitscale.cli import main
    from bitscale.testing.toy import ToyFamily

    mod = types.ModuleType("toyplug")
    mod.register_models = hookimpl(lambda register: register(ToyFamily()))
    plugins.set_plugins(plugins.load_plugins([("toyplug", mod)], entrypoints=False))
    sys.exit(main(["run", *sys.argv[1:]]))
""")


@pytest.mark.slow
@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_two_drivers_on_one_postgres_store_lose_and_duplicate_nothing(store_url, tmp_path):
    # Issue 14's acceptance: two `bitscale run` processes, same grid, one PostgreSQL store, started together.
    exp, script = tmp_path / "multi.yaml", tmp_path / "driver.py"
    exp.write_text(EXPERIMENT)
    script.write_text(DRIVER)
    cmd = [sys.executable, str(script), str(exp), "--store", store_url, "--no-progress", "--threads", "1"]
    drivers = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [d.communicate(timeout=600) for d in drivers]
    assert [d.returncode for d in drivers] == [0, 0], outputs
    password = sa.engine.make_url(store_url).password
    assert all(password not in out + err for out, err in outputs)
    frame = ResultStore(store_url).frame()
    assert len(frame) == 6 and frame["cell_hash"].is_unique and set(frame["status"]) == {"ok"}
    # Each result line is a cell computed: the drivers claim cells, so none is computed twice.
    computed = [len(re.findall(r"seed=\d+: FID ", out)) for out, _ in outputs]
    assert sum(computed) == 6 and min(computed) >= 1, outputs  # both worked, no cell twice
