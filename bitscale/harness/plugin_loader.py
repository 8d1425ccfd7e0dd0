"""Plugin loading: built-in default plugins and installed ``bitscale`` entry points, one at a time.

A plugin that fails to import, or implements a misspelled hook, is reported (name, distribution,
error) and skipped, so one broken package never takes the CLI down; ``BITSCALE_STRICT_PLUGINS=1``
turns that into an error. ``BITSCALE_DISABLE_PLUGINS=a,b`` blocks plugins by name (built-ins too).
"""

from __future__ import annotations

import importlib
import os
import traceback
from dataclasses import dataclass, field
from importlib.metadata import entry_points

import pluggy

from bitscale.harness import hookspecs
from bitscale.harness.contracts import DistillLoss, ModelFamily, Quantizer
from bitscale.harness.errors import PluginError
from bitscale.harness.fingerprint import ENTRY_POINT_GROUP
from bitscale.harness.registry import Registry, WrongKind

# Built-ins are plugins like any other: core code reaches them only through this list.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "bitscale.plugins.models.var",
    "bitscale.plugins.models.llamagen",
    "bitscale.plugins.models.dit",
    "bitscale.plugins.models.mar",
    "bitscale.plugins.models.rar",
    "bitscale.plugins.models.par",
    "bitscale.plugins.quantizers.rtn",
    "bitscale.plugins.quantizers.gptq",
    "bitscale.plugins.quantizers.smoothquant",
    "bitscale.plugins.quantizers.gptvq",
    "bitscale.plugins.quantizers.omniquant",
    "bitscale.plugins.quantizers.quarot",
    "bitscale.plugins.quantizers.svdquant",
    "bitscale.plugins.quantizers.ptq4arvg",
    "bitscale.plugins.losses.kl",
    "bitscale.plugins.losses.topkld",
    "bitscale.plugins.losses.js",
    "bitscale.plugins.losses.mse",
    "bitscale.plugins.quantizers.qat",
)

HOOKS = ("register_models", "register_quantizers", "register_losses")


@dataclass
class PluginInfo:
    name: str
    dist: str  # distribution name ("bitscale" for built-ins)
    version: str
    hooks: list[str] = field(default_factory=list)
    builtin: bool = False


@dataclass
class LoadError:
    name: str
    dist: str
    error: str
    traceback: str = ""


@dataclass
class PluginSet:
    """Everything the loaded plugins registered, plus what failed to load."""

    manager: pluggy.PluginManager
    plugins: dict[str, PluginInfo]
    models: Registry
    quantizers: Registry
    losses: Registry
    errors: list[LoadError]

    def registry(self, hook: str) -> Registry:
        return {"register_models": self.models, "register_quantizers": self.quantizers, "register_losses": self.losses}[
            hook
        ]

    def version_of(self, plugin: str) -> str:
        info = self.plugins.get(plugin)
        return f"{info.dist}=={info.version}" if info else "unknown"


def _env_list(var: str) -> set[str]:
    return {x.strip() for x in os.environ.get(var, "").split(",") if x.strip()}


def strict() -> bool:
    return os.environ.get("BITSCALE_STRICT_PLUGINS", "") not in ("", "0", "false", "False")


def _bitscale_version() -> str:
    import bitscale

    return bitscale.__version__


def load_plugins(
    extra: list[tuple[str, object]] | None = None,
    *,
    entrypoints: bool = True,
    defaults: bool = True,
) -> PluginSet:
    """Load default plugins, installed entry points and ``extra`` (name, module/object) pairs."""
    pm = pluggy.PluginManager("bitscale")
    pm.add_hookspecs(hookspecs)
    disabled = _env_list("BITSCALE_DISABLE_PLUGINS")
    plugins: dict[str, PluginInfo] = {}
    errors: list[LoadError] = []

    def add(name: str, dist: str, version: str, load, builtin: bool) -> None:
        if name in disabled:
            return
        if name in plugins:
            msg = f"two plugins are named {name!r} ({plugins[name].dist} and {dist}); uninstall or disable one"
            return _fail(errors, LoadError(name, dist, msg))
        try:
            obj = load()
            pm.register(obj, name=name)
        except Exception as exc:  # noqa: BLE001 - any import error is reported, not fatal
            return _fail(errors, LoadError(name, dist, f"{type(exc).__name__}: {exc}", traceback.format_exc()))
        try:
            pm.check_pending()  # a misspelled hook name is an error, not a silent no-op
        except pluggy.PluginValidationError as exc:
            pm.unregister(name=name)
            return _fail(errors, LoadError(name, dist, f"unknown hook: {exc}"))
        hooks = sorted(c.name for c in pm.get_hookcallers(pm.get_plugin(name)) or [])
        plugins[name] = PluginInfo(name, dist, version, hooks, builtin)

    if defaults:
        for modname in DEFAULT_PLUGINS:
            add(modname, "bitscale", _bitscale_version(), lambda m=modname: importlib.import_module(m), True)
    if entrypoints and os.environ.get("BITSCALE_NO_ENTRYPOINTS", "") in ("", "0"):
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = ep.dist.name if ep.dist else "?"
            version = ep.dist.version if ep.dist else "?"
            add(ep.name, dist, version, ep.load, False)
    for name, obj in extra or []:
        add(name, getattr(obj, "__name__", "test"), "0", lambda o=obj: o, False)

    models = Registry("model", ModelFamily, instances=True)
    quantizers, losses = Registry("quantizer", Quantizer), Registry("loss", DistillLoss)
    pset = PluginSet(pm, plugins, models, quantizers, losses, errors)
    for hook in HOOKS:
        # Call each implementation separately so every registration is attributed to its plugin.
        for impl in getattr(pm.hook, hook).get_hookimpls():
            registry = pset.registry(hook)

            def register(obj, name: str | None = None, _plugin=impl.plugin_name, _reg=registry):
                _reg.add(obj, _plugin, name)

            try:
                impl.function(register=register)
            except WrongKind as exc:  # a broken plugin, like one that fails to import: reported and skipped
                info = plugins[impl.plugin_name]
                _fail(errors, LoadError(impl.plugin_name, info.dist, str(exc)))
            except PluginError:
                raise  # duplicate names: always an error, it names both plugins
            except Exception as exc:  # noqa: BLE001
                info = plugins[impl.plugin_name]
                _fail(
                    errors,
                    LoadError(
                        impl.plugin_name,
                        info.dist,
                        f"{hook} failed: {type(exc).__name__}: {exc}",
                        traceback.format_exc(),
                    ),
                )
    return pset


def _fail(errors: list[LoadError], err: LoadError) -> None:
    if strict():
        raise PluginError(
            f"plugin {err.name!r} ({err.dist}) failed to load: {err.error} (BITSCALE_STRICT_PLUGINS is set)"
        )
    errors.append(err)


_CACHED: PluginSet | None = None


def get_plugins() -> PluginSet:
    """The process-wide plugin set, loaded on first use."""
    global _CACHED
    if _CACHED is None:
        _CACHED = load_plugins()
    return _CACHED


def set_plugins(pset: PluginSet | None) -> None:
    """Replace (or with ``None``, forget) the process-wide plugin set; used by tests and fixtures."""
    global _CACHED
    _CACHED = pset
