"""Replace a named submodule of a model in place (``"blocks.3.attn.qkv"`` -> new module)."""

from __future__ import annotations

from torch import nn


def set_submodule(root: nn.Module, name: str, new: nn.Module) -> nn.Module:
    """Put ``new`` at dotted path ``name`` under ``root``; return the module it replaced.

    Works through ``nn.Sequential``/``nn.ModuleList`` indices as well as attributes, because
    ``named_modules`` names them the same way (``"blocks.0.fc1"``).
    """
    if not name:
        raise ValueError("cannot replace the root module itself")
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    old = parent.get_submodule(child)
    if isinstance(parent, (nn.Sequential, nn.ModuleList)) and child.isdigit():
        parent[int(child)] = new
    else:
        setattr(parent, child, new)
    return old
