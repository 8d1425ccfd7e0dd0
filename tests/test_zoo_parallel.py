"""``bitscale zoo train --jobs N``: units trained once each, shared stage first, failures named.

The fake families train in no time and log every training to ``<cache>/log.txt``, so the tests
see what the worker processes did. They are defined at module level: the workers are spawned
and unpickle them by importing this module, which therefore imports little (worker start-up).
"""

from __future__ import annotations

import os
import time
import types

import pytest
import torch

from bitscale import TrainableFamily, hookimpl
from bitscale.cli import main
from bitscale.harness.artifacts import cache
from bitscale.testing.toy import ToyFamily
from bitscale.zoo import parallel
from bitscale.zoo.parallel import TrainingFailed, train_units
from bitscale.zoo.units import staged_units, units_for


def _log(event: str, artifact: str) -> None:
    with open(cache.cache_dir() / "log.txt", "a") as fh:  # one short append per line: no interleaving
        fh.write(f"{time.time():.6f} {os.getpid()} {event} {artifact}\n")


def _save(artifact: str) -> dict:
    _log("start", artifact)
    manifest = {"final_loss": 0.5, "seconds": 0.2}
    cache.save_artifact(artifact, {"w": torch.zeros(1)}, manifest)
    _log("end", artifact)
    return manifest


class OnlyTrains(TrainableFamily):
    """A third-party trainable family that implements ``train`` alone."""

    name, sizes, style = "only-trains", ("a", "b"), "language"

    def train(self, size, options, force=False):
        return _save(f"{self.name}/{size}")

    def build(self, size, options, device):
        raise NotImplementedError


class Staged(OnlyTrains):
    """A family with a shared stage that every size needs, and its own freshness check."""

    name, sizes = "staged", ("s1", "s2", "s3")
    fails: str | None = None  # a size whose training raises

    def train_shared(self, options):
        return _save(f"{self.name}/shared")

    def train(self, size, options, force=False):
        if cache.load_manifest(f"{self.name}/shared") is None:
            raise RuntimeError("trained before its shared stage")
        if size == self.fails:
            raise ValueError(f"boom in {size}")
        return _save(f"{self.name}/{size}")

    def training_units(self, sizes, options, force=False):
        todo = {s: f"{self.name}/{s}" for s in sizes if force or cache.load_manifest(f"{self.name}/{s}") is None}
        shared = f"{self.name}/shared" if todo and cache.load_manifest(f"{self.name}/shared") is None else None
        return staged_units(self, options, shared, todo, force, cost=lambda s: self.sizes.index(s))


class Failing(Staged):
    name, fails = "failing", "s2"


class FailingShared(Staged):
    name = "failing-shared"

    def train_shared(self, options):
        raise OSError("disk on fire")


def _plugin(*families):
    mod = types.ModuleType("zoo_fixture_plugin")
    mod.register_models = hookimpl(lambda register: [register(f) for f in families])
    return mod


def _events() -> list[tuple[float, int, str, str]]:
    path = cache.cache_dir() / "log.txt"
    lines = path.read_text().split("\n") if path.exists() else []
    return [(float(t), int(pid), event, artifact) for t, pid, event, artifact in (x.split() for x in lines if x)]


@pytest.fixture
def zoo_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BITSCALE_CACHE", str(tmp_path))  # inherited by the spawned workers
    return tmp_path


def test_two_jobs_train_each_artifact_once_shared_stage_first_then_skip_fresh(zoo_cache, register_plugin, capsys):
    register_plugin(_plugin(Staged(), OnlyTrains()))
    assert main(["zoo", "train", "staged", "only-trains", "--jobs", "2", "--no-progress"]) == 0
    ends = {a: t for t, _, event, a in _events() if event == "end"}
    starts = [a for _, _, event, a in _events() if event == "start"]
    wanted = ["staged/shared", "staged/s1", "staged/s2", "staged/s3", "only-trains/a", "only-trains/b"]
    assert sorted(starts) == sorted(wanted)  # once each
    size_starts = [t for t, _, event, a in _events() if event == "start" and a in wanted[1:4]]
    assert len(size_starts) == 3 and min(size_starts) > ends["staged/shared"]  # the shared stage first
    assert os.getpid() not in {pid for _, pid, _, _ in _events()}  # trained by the workers
    assert "staged/s3: final loss 0.5000" in capsys.readouterr().out

    # Fresh artifacts are not scheduled, nor the fresh shared stage: only the missing size trains. A family
    # with only ``train`` cannot tell, so each of its sizes is a unit (its ``train`` reuses its cache).
    (zoo_cache / "staged" / "s2.json").unlink()
    assert [u.artifact for u in units_for(Staged(), Staged.sizes, Staged.Options())] == ["staged/s2"]
    assert len(units_for(OnlyTrains(), OnlyTrains.sizes, OnlyTrains.Options())) == 2
    before = len(_events())
    assert main(["zoo", "train", "staged", "--jobs", "2", "--no-progress"]) == 0
    assert [a for _, _, event, a in _events()[before:] if event == "start"] == ["staged/s2"]
    assert main(["zoo", "train", "staged", "--no-progress"]) == 0
    assert "every tiny model asked for is trained and fresh" in capsys.readouterr().out


def test_a_failing_worker_names_its_artifact_and_exits_non_zero(zoo_cache, register_plugin, capsys):
    register_plugin(_plugin(Failing()))
    assert main(["zoo", "train", "failing", "--jobs", "2", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "training failing/s2 failed" in err and "ValueError: boom in s2" in err  # with the traceback
    assert "bitscale: error: training failed: failing/s2: ValueError: boom in s2" in err
    assert cache.load_artifact("failing/s2") is None  # nothing half-written
    assert not list(zoo_cache.glob("failing/*.tmp"))
    assert {a for _, _, event, a in _events() if event == "end"} == {"failing/shared", "failing/s1", "failing/s3"}


def test_sizes_waiting_for_a_failed_shared_stage_are_not_started(zoo_cache):
    with pytest.raises(TrainingFailed) as err:
        train_units(units_for(FailingShared(), ["s1", "s2"], None), 1, progress=False, log=lambda line: None)
    assert sorted(str(err.value).split("; ")) == [
        "failing-shared/s1: not trained: failing-shared/shared failed",
        "failing-shared/s2: not trained: failing-shared/shared failed",
        "failing-shared/shared: OSError: disk on fire",
    ]
    assert _events() == []


def test_runner_pretrains_missing_tiny_models_of_trainable_families(zoo_cache, register_plugin, monkeypatch):
    from bitscale.zoo.pretrain import pretrain_missing

    pset = register_plugin(_plugin(Staged(), ToyFamily()))
    monkeypatch.setattr(parallel, "usable_cores", lambda: 1)  # in-process: no worker start-up in this test
    cell = lambda family, size: types.SimpleNamespace(family=family, size=size, model_options={})  # noqa: E731
    pretrain_missing([cell("staged", "s1"), cell("staged", "s1"), cell("staged", "s3"), cell("toy", "d1")], pset)
    assert [a for _, _, event, a in _events() if event == "start"] == ["staged/shared", "staged/s3", "staged/s1"]
    pretrain_missing([cell("staged", "s1")], pset)  # cached: nothing to do
    assert len(_events()) == 6


def test_builtin_families_plan_their_shared_stage_before_their_sizes(zoo_cache):
    from bitscale.plugins.models.llamagen.tiny import LlamaGenTinyFamily, LlamaGenTinyOptions
    from bitscale.plugins.models.var.tiny import VarTinyFamily, VarTinyOptions

    units = units_for(LlamaGenTinyFamily(), ["d3w64", "d4w128"], LlamaGenTinyOptions(steps=5, tokenizer_steps=2))
    # step overrides name their own artifacts (as var-tiny's do): the default zoo is never overwritten
    assert [(u.artifact, u.after) for u in units] == [
        ("llamagen-tiny/vq-s2", None),
        ("llamagen-tiny/d3w64-s5-vq-s2", "llamagen-tiny/vq-s2"),
        ("llamagen-tiny/d4w128-s5-vq-s2", "llamagen-tiny/vq-s2"),
    ]
    assert units[2].cost > units[1].cost > 0
    units = units_for(VarTinyFamily(), ["d2"], VarTinyOptions(steps=5, vae_steps=2))
    assert [(u.artifact, u.size, u.after) for u in units] == [
        ("var-tiny/vqvae-s2", None, None),
        ("var-tiny/d2-s5-v2", "d2", "var-tiny/vqvae-s2"),
    ]
