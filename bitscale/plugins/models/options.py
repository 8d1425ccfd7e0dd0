"""What every model family does with its options and sizes before it builds anything."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from bitscale.harness.contracts import PluginOptions
from bitscale.harness.errors import ConfigError

O = TypeVar("O", bound=PluginOptions)


def coerce_options(options: PluginOptions | None, cls: type[O]) -> O:
    """``options`` as the family's own ``cls`` (``None``: the defaults; another class: re-validated)."""
    if options is None:
        return cls()
    if isinstance(options, cls):
        return options
    return cls.model_validate(options.model_dump())


def check_size(family: str, size: str, sizes: Iterable[str]) -> None:
    """Raise ``ConfigError`` naming the valid sizes unless ``size`` is one of them."""
    sizes = list(sizes)
    if size not in sizes:
        raise ConfigError(f"{family} has no size {size!r}; sizes are {', '.join(sizes)}")


def sampler_from(options: Any, defaults: dict[str, Any]) -> dict[str, Any]:
    """``defaults`` with every sampler option the user set (options that are ``None`` keep the default)."""
    return {k: (getattr(options, k) if getattr(options, k, None) is not None else v) for k, v in defaults.items()}
