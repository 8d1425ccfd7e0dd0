"""Name -> plugin object registries. Duplicates are errors; unknown names suggest close matches."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from bitscale.harness.errors import PluginError

T = TypeVar("T")


class WrongKind(PluginError):
    """A plugin registered something that is not what the registry holds (reported; the plugin is skipped)."""


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    plugin: str  # the plugin (entry point or default-plugin module) that registered it


class Registry(Generic[T]):
    """What plugins registered under one kind ("model", "quantizer", "loss").

    With ``base_cls``, only what fits it is accepted: instances of it (``instances=True``, the
    model families) or subclasses of it (quantizer and loss classes); anything else is an error
    that names the plugin, instead of a failure deep inside a run.
    """

    def __init__(self, kind: str, base_cls: type | None = None, instances: bool = False) -> None:
        self.kind = kind
        self.base_cls = base_cls
        self.instances = instances
        self._entries: dict[str, Entry[T]] = {}

    def _check_type(self, obj: object, plugin: str) -> None:
        base = self.base_cls
        if base is None:
            return
        if self.instances:
            if isinstance(obj, base):
                return
            hint = " (register an instance, not the class)" if isinstance(obj, type) and issubclass(obj, base) else ""
            raise WrongKind(
                f"plugin {plugin!r} registered {obj!r} as a {self.kind}, but it is not a {base.__name__} instance{hint}"
            )
        if isinstance(obj, type) and issubclass(obj, base):
            return
        hint = " (register the class, not an instance)" if isinstance(obj, base) else ""
        raise WrongKind(
            f"plugin {plugin!r} registered {obj!r} as a {self.kind}, but it is not a subclass of {base.__name__}{hint}"
        )

    def add(self, obj: T, plugin: str, name: str | None = None) -> None:
        self._check_type(obj, plugin)
        name = name or getattr(obj, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin {plugin!r} registered a {self.kind} without a string `name`: {obj!r}")
        if name in self._entries:
            first = self._entries[name].plugin
            raise PluginError(
                f"{self.kind} name {name!r} is registered twice: by plugin {first!r} and by plugin {plugin!r}; "
                f"rename one, or disable one with BITSCALE_DISABLE_PLUGINS={plugin}"
            )
        self._entries[name] = Entry(name, obj, plugin)

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise PluginError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        known = ", ".join(sorted(self._entries)) or "none"
        return f"unknown {self.kind} {name!r}{hint} (registered: {known}; see `bitscale plugins list`)"

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self):
        return iter(self._entries.values())

    def names(self) -> list[str]:
        return list(self._entries)

    def by_plugin(self, plugin: str) -> list[str]:
        return [e.name for e in self._entries.values() if e.plugin == plugin]


def describe(obj: Any) -> str:
    return (getattr(obj, "description", "") or (obj.__doc__ or "").strip().split("\n")[0]).strip()
