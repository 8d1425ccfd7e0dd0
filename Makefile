# Two commands do all the set-up on a fresh machine with Python 3.11 and pip:
#   make run    - create .venv, install bitscale, run the built-in quick grid, print the leaderboard
#   make test   - create .venv with dev extras and the example plugin package, lint (ruff), run pytest
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXPERIMENT ?=
# One torch thread: the quick grid's tiny models run fastest so, on idle and busy machines alike.
RUN_ARGS ?= --threads 1
PYTEST_ARGS ?=

# Files `make lint` checks the format of: the tree is formatted once the open branches are merged
# (pyproject.toml [tool.ruff] says why), then this list becomes ".".
FORMATTED := bitscale/__init__.py bitscale/testing/__init__.py bitscale/harness/training_unit.py \
	bitscale/harness/plugin_sources.py bitscale/harness/registry.py bitscale/cli/store.py bitscale/cli/plugins.py \
	benchmarks/bench_startup.py tests/test_public_api.py tests/test_docs.py tests/test_force_and_prune.py \
	bitscale/harness/fingerprint.py bitscale/harness/metadata_cache.py bitscale/harness/plugin_metadata.py \
	bitscale/harness/plan_cache.py bitscale/harness/cells.py bitscale/testing/toy.py tests/test_plan_cache.py \
	examples/bitscale-quantizer-example

.PHONY: run test lint bench clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# setuptools' editable-install notices ("Editable installation ... be careful with folders ...")
# are UserWarnings about its own mechanics; they are hidden so that install output is errors only.
QUIET_BUILD := PYTHONWARNINGS=ignore::UserWarning

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(QUIET_BUILD) $(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml examples/bitscale-quantizer-example/pyproject.toml $(VENV)/.installed
	$(QUIET_BUILD) $(BIN)/pip install --quiet -e ".[dev]" -e examples/bitscale-quantizer-example
	touch $@

run: $(VENV)/.installed
	$(BIN)/bitscale run $(EXPERIMENT) $(RUN_ARGS)

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check bitscale tests benchmarks examples
	$(BIN)/ruff format --check $(FORMATTED)

bench: $(VENV)/.installed-dev
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean-venv:
	rm -rf $(VENV)
