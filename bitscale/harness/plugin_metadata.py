"""Plugin metadata as plain data: every plugin, what it registered, each quantizer's declared precisions,
and what failed to load (``bitscale plugins list``).

Learning it means importing every plugin, and every built-in one imports torch (seconds). So it is
kept in the metadata cache under the installation's fingerprint (``bitscale.harness.fingerprint``):
a later process reads it without importing any plugin, until a plugin, a distribution, bitscale
itself or a ``BITSCALE_*`` variable changes. ``bitscale run`` stores it too when it loads the plugins.
"""

from __future__ import annotations

from typing import Any

from bitscale.harness import fingerprint, metadata_cache

KIND = "plugins"


def describe(ps: Any) -> dict[str, Any]:
    """The metadata of a loaded ``PluginSet`` (JSON data)."""
    plugins = [
        {
            "name": info.name,
            "dist": info.dist,
            "version": info.version,
            "builtin": info.builtin,
            "hooks": info.hooks,
            "models": ps.models.by_plugin(info.name),
            "quantizers": ps.quantizers.by_plugin(info.name),
            "losses": ps.losses.by_plugin(info.name),
        }
        for info in ps.plugins.values()
    ]
    errors = [{"name": e.name, "dist": e.dist, "error": e.error} for e in ps.errors]
    quantizers = [{"name": e.name, "plugin": e.plugin, **declared_precisions(e.obj)} for e in ps.quantizers]
    return {"plugins": plugins, "quantizers": quantizers, "errors": errors}


def declared_precisions(cls: Any) -> dict[str, Any]:
    """What a quantizer class declares it can run, as plain data (``Quantizer``'s class attributes)."""

    def widths(bits) -> list[int] | None:
        return sorted(bits) if bits is not None else None

    return {
        "weight_kinds": sorted(cls.weight_kinds),
        "weight_bits": widths(cls.weight_bits),
        "activation_kinds": sorted(cls.activation_kinds),
        "activation_bits": widths(cls.activation_bits),
        "needs_weight_quant": cls.needs_weight_quant,
        "needs_activation_quant": cls.needs_activation_quant,
        "trains": cls.trains,
    }


def _loaded() -> dict[str, Any]:
    from bitscale.harness.plugin_loader import get_plugins

    return describe(get_plugins())


def plugin_metadata() -> tuple[dict[str, Any], bool]:
    """(metadata, True if read from the cache): the loaded plugins', or the cached copy for this installation."""
    # A plugin that failed to load may work once something outside bitscale's view is fixed (a system
    # library, a driver): such metadata is not kept, every process loads the plugins again.
    return metadata_cache.cached(
        KIND, fingerprint.installation_key, _loaded, dump=lambda v: v, restore=dict, keep=lambda v: not v["errors"]
    )


def remember(key: dict[str, Any], ps: Any) -> None:
    """Store the metadata of ``ps``, loaded by default from an installation whose key was ``key``."""
    if not ps.errors and key == fingerprint.installation_key():
        metadata_cache.save(KIND, key, describe(ps))
