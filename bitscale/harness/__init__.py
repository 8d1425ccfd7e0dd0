"""The core of bitscale: hook specs, plugin loading, config, planner, runner, store, evaluation, CLI."""

from bitscale.harness.hookspecs import hookimpl

__all__ = ["hookimpl"]
