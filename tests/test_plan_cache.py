"""The metadata cache (issue 13): plugin metadata and a grid's plan are read without importing torch while
their inputs are unchanged, and any change of an input plans again.

The plugin under test is a real distribution on ``sys.path`` (a ``.dist-info`` with a ``bitscale`` entry
point and a module beside it), so versions, sources and entry points change as they do for a user.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bitscale.harness import plugin_loader
from bitscale.harness.plan_cache import plan_experiment

MODULE = "fake_bitscale_plugin"
DIST = "fake-bitscale-plugin"

PLUGIN = '''
from bitscale import hookimpl
from bitscale.harness.artifacts.shipped import cache_dir
from bitscale.hashing import sha256_text
from bitscale.plugins.quantizers.rtn import RTN, RTNOptions
from bitscale.testing.toy import ToyFamily


class FakeOptions(RTNOptions):
    group_size: int | None = GROUP


class FakeRTN(RTN):
    name = "fake-rtn"
    Options = FakeOptions


class FakeFamily(ToyFamily):
    """A family whose weights live in the artifact cache, as the tiny zoo's trained ones do."""

    name = "fake-toy"

    def weights_id(self, size, options):
        path = cache_dir() / "fake-toy" / f"{size}.safetensors"
        return sha256_text(path.read_text(), 16) if path.exists() else None


@hookimpl
def register_models(register):
    register(FakeFamily())


@hookimpl
def register_quantizers(register):
    register(FakeRTN)
'''

EXPERIMENT = """
name: cache-test
models: [{family: fake-toy, sizes: [d1]}]
quantizers: [{name: fake-rtn, options: OPTIONS}]
precisions: [W16A16, W4A16, W8A8]
evaluation: {num_samples: 10}
"""


def _touch_later(path: Path) -> None:
    """Make sure a rewritten file's time differs from before, even on a coarse clock."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


class Fake:
    """The fake plugin distribution, its weights and an experiment file, in a temporary folder."""

    def __init__(self, root: Path) -> None:
        self.site, self.cache, self.experiment = root / "site", root / "cache", root / "exp.yaml"
        self.site.mkdir()
        self.version = ""
        self.set_version("1.0")
        self.set_default_group("None")
        self.set_weights("first weights")
        self.set_options("{}")

    def set_version(self, version: str) -> None:
        if self.version:
            (self.site / f"{MODULE}-{self.version}.dist-info").rename(self.site / f"{MODULE}-{version}.dist-info")
        info = self.site / f"{MODULE}-{version}.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {DIST}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[bitscale]\nfake = {MODULE}\n")
        self.version = version

    def set_default_group(self, value: str) -> None:
        path = self.site / f"{MODULE}.py"
        path.write_text(PLUGIN.replace("GROUP", value))
        if value != "None":
            _touch_later(path)

    def set_weights(self, text: str) -> None:
        path = self.cache / "fake-toy" / "d1.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        existed = path.exists()
        path.write_text(text)
        if existed:
            _touch_later(path)

    def set_options(self, options: str) -> None:
        self.experiment.write_text(EXPERIMENT.replace("OPTIONS", options))

    def plan(self):
        """Plan as a fresh ``bitscale run`` process would: no plugin loaded, the plugin module not imported."""
        plugin_loader.set_plugins(None)
        sys.modules.pop(MODULE, None)
        importlib.invalidate_caches()
        return plan_experiment(str(self.experiment))


@pytest.fixture
def fake(tmp_path, monkeypatch):
    monkeypatch.delenv("BITSCALE_NO_METADATA_CACHE", raising=False)
    monkeypatch.delenv("BITSCALE_NO_ENTRYPOINTS", raising=False)
    monkeypatch.setenv("BITSCALE_CACHE", str(tmp_path / "cache"))
    fake = Fake(tmp_path)
    monkeypatch.syspath_prepend(str(fake.site))
    yield fake
    sys.modules.pop(MODULE, None)


def _hashes(grid) -> list[str]:
    return [c.hash for c in grid.plan.cells]


def test_unchanged_inputs_reuse_the_plan_without_loading_plugins(fake):
    first = fake.plan()
    assert not first.cached and len(first.plan.cells) == 3
    again = fake.plan()
    assert again.cached and plugin_loader._CACHED is None  # nothing was loaded to plan it
    assert _hashes(again) == _hashes(first)
    assert again.plan.skipped == first.plan.skipped and again.sizes == first.sizes == {"fake-toy": ["d1", "d2", "d4"]}
    assert [c.config() for c in again.plan.cells] == [c.config() for c in first.plan.cells]


def test_a_changed_option_plans_again(fake):
    first = fake.plan()
    fake.set_options("{group_size: 8}")
    changed = fake.plan()
    assert not changed.cached
    assert {c.quantizer_options.get("group_size") for c in changed.plan.cells if c.method == "fake-rtn"} == {8}
    assert set(_hashes(changed)) - set(_hashes(first))  # the quantized cells are other cells
    assert fake.plan().cached and _hashes(fake.plan()) == _hashes(changed)


def test_a_new_plugin_version_plans_again(fake):
    first = fake.plan()
    assert {c.versions.get("quantizer") for c in first.plan.cells} == {None, f"{DIST}==1.0"}
    fake.set_version("1.1")
    bumped = fake.plan()
    assert not bumped.cached
    assert {c.versions.get("quantizer") for c in bumped.plan.cells} == {None, f"{DIST}==1.1"}
    assert set(_hashes(bumped)) != set(_hashes(first))


def test_a_changed_weight_file_plans_again(fake):
    first = fake.plan()
    fake.set_weights("retrained weights")
    retrained = fake.plan()
    assert not retrained.cached
    assert first.plan.cells[0].versions["weights"] != retrained.plan.cells[0].versions["weights"]
    assert not set(_hashes(retrained)) & set(_hashes(first))  # every cell names its weights


def test_an_edited_plugin_source_plans_again(fake):
    first = fake.plan()
    fake.set_default_group("16")  # a new option default, same version: a plugin edited in a working tree
    edited = fake.plan()
    assert not edited.cached
    assert {c.quantizer_options.get("group_size") for c in edited.plan.cells if c.method == "fake-rtn"} == {16}
    assert set(_hashes(edited)) != set(_hashes(first))


def test_untrained_weights_are_never_kept(fake):
    (fake.cache / "fake-toy" / "d1.safetensors").unlink()
    assert fake.plan().plan.untrained
    assert not fake.plan().cached


def test_a_stored_plan_that_does_not_match_its_hashes_is_planned_again(fake):
    first = fake.plan()
    [entry] = (fake.cache / "metadata").glob("plan-*.json")
    data = json.loads(entry.read_text())
    data["value"]["cells"][0]["seed"] = 7  # edited by hand: its hash no longer says what it is
    entry.write_text(json.dumps(data))
    again = fake.plan()
    assert not again.cached and _hashes(again) == _hashes(first)


CLI = "import sys; from bitscale.cli import main; rc = main(sys.argv[1:]); print('TORCH', 'torch' in sys.modules)"


def _bitscale(args: list[str], env: dict[str, str]) -> tuple[str, bool]:
    out = subprocess.run(
        [sys.executable, "-c", CLI, *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=env["BITSCALE_CACHE"],
    ).stdout
    body, _, flag = out.rpartition("TORCH ")
    return body, flag.strip() == "True"


def test_plugins_list_and_a_planned_run_import_no_torch(tmp_path):
    """A process that plans (and loads the plugins) keeps both; the next ones import no torch and print the same."""
    cache = tmp_path / "cache"
    cache.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "BITSCALE_NO_METADATA_CACHE"}
    env.update(BITSCALE_CACHE=str(cache), BITSCALE_NO_ENTRYPOINTS="1", PYTHONPATH=str(Path(__file__).parents[1]))
    planned, torch_first = _bitscale(["run", "--dry-run"], env)
    replanned, torch_again = _bitscale(["run", "--dry-run"], env)
    listed, torch_list = _bitscale(["plugins", "list", "--json"], env)
    assert torch_first and not torch_again and not torch_list
    assert replanned == planned and "18 cells planned" in planned
    from bitscale.harness.plugin_metadata import describe

    assert json.loads(listed) == describe(plugin_loader.load_plugins(entrypoints=False))
