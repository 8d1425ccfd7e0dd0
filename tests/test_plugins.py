import json
import subprocess
import sys
import types

import pytest

from bitscale import hookimpl
from bitscale.harness.contracts import Quantizer, QuantReport
from bitscale.harness.errors import PluginError
from bitscale.harness.plugin_loader import DEFAULT_PLUGINS, load_plugins


class _Q(Quantizer):
    name = "rtm"

    def apply(self, job):
        return QuantReport(effective_weight_bits=job.precision.w_bits)


def _plugin(**hooks):
    mod = types.ModuleType("fixture_plugin")
    for name, fn in hooks.items():
        setattr(mod, name, hookimpl(fn))
    return mod


def test_builtins_register_through_the_same_hooks():
    ps = load_plugins(entrypoints=False)
    assert not ps.errors, ps.errors
    assert set(ps.plugins) == set(DEFAULT_PLUGINS)
    assert "rtn" in ps.quantizers and ps.quantizers.entry("rtn").plugin == "bitscale.plugins.quantizers.rtn"
    assert "var-tiny" in ps.models


def test_extra_plugin_registers_and_is_attributed():
    ps = load_plugins([("mine", _plugin(register_quantizers=lambda register: register(_Q)))], entrypoints=False)
    assert ps.quantizers.entry("rtm").plugin == "mine"
    assert ps.plugins["mine"].hooks == ["register_quantizers"]


def test_duplicate_names_are_an_error_naming_both_plugins():
    a = _plugin(register_quantizers=lambda register: register(_Q))
    b = _plugin(register_quantizers=lambda register: register(_Q))
    with pytest.raises(PluginError, match="'rtm' is registered twice: by plugin 'a' and by plugin 'b'"):
        load_plugins([("a", a), ("b", b)], entrypoints=False)


def test_unknown_name_suggests_close_matches():
    ps = load_plugins(entrypoints=False)
    with pytest.raises(PluginError, match="did you mean 'rtn'"):
        ps.quantizers.get("rtm")


def test_broken_plugin_is_reported_and_skipped(monkeypatch):
    def boom(register):
        raise RuntimeError("kaput")

    ps = load_plugins([("broken", _plugin(register_quantizers=boom))], entrypoints=False)
    assert [e.name for e in ps.errors] == ["broken"] and "kaput" in ps.errors[0].error
    assert "rtn" in ps.quantizers  # the rest still works
    monkeypatch.setenv("BITSCALE_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="broken"):
        load_plugins([("broken", _plugin(register_quantizers=boom))], entrypoints=False)


def test_misspelled_hook_is_caught_by_check_pending():
    ps = load_plugins([("typo", _plugin(register_quantiser=lambda register: None))], entrypoints=False)
    assert [e.name for e in ps.errors] == ["typo"] and "register_quantiser" in ps.errors[0].error
    assert "typo" not in ps.plugins


def test_disable_list_blocks_plugins(monkeypatch):
    monkeypatch.setenv("BITSCALE_DISABLE_PLUGINS", "bitscale.plugins.quantizers.rtn, mine")
    ps = load_plugins([("mine", _plugin(register_quantizers=lambda register: register(_Q)))], entrypoints=False)
    assert "rtn" not in ps.quantizers and "rtm" not in ps.quantizers


def _cli(*args, env_extra=None):
    import os

    env = {**os.environ, "BITSCALE_NO_ENTRYPOINTS": "0", **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "bitscale", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_example_package_is_discovered_by_plugins_list():
    pytest.importorskip("bitscale_quantizer_example", reason="make test installs examples/bitscale-quantizer-example")
    out = _cli("plugins", "list", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    pow2 = [p for p in data["plugins"] if p["name"] == "pow2"]
    assert pow2 and pow2[0]["dist"] == "bitscale-quantizer-example" and pow2[0]["quantizers"] == ["pow2"]
    assert pow2[0]["builtin"] is False and pow2[0]["hooks"] == ["register_quantizers"]
