"""The core of bitscale: hook specs, plugin loading, config, planner, runner, store, evaluation.

Plugin authors import the contracts from ``bitscale`` (the public API), not from here. This
package's ``__init__`` imports nothing, so the light parts of the core (errors, store URLs,
artifact catalog) cost no heavy import.
"""
