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

# Files `make lint` checks the format of: the whole tree (formatted once every branch was merged).
FORMATTED := .

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
