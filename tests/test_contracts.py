"""The plugin contracts, run over every registered built-in plugin (like timm's test_models.py)."""

import functools

import pytest
import torch

from bitscale import Precision
from bitscale.harness.plugin_loader import load_plugins
from bitscale.testing.contract_checks import (
    check_declarations,
    check_error_order,
    check_loss,
    check_model_family,
    check_precision,
    check_quantizer,
    supported_precisions,
)
from bitscale.testing.toy import ToyModel

PLUGINS = load_plugins(entrypoints=False)
QUANTIZERS = sorted(PLUGINS.quantizers.names())
LOSSES = sorted(PLUGINS.losses.names())
TINY_FAMILIES = sorted(e.name for e in PLUGINS.models if e.obj.trainable)
# Optimising quantizers run a few steps only: the contract is that they run and quantize on
# every family, not how well (their quality tests live in test_quantizers.py / test_qat.py).
FAST_OPTIONS = {"omniquant": {"steps": 2}, "qat": {"steps": 2}}


# one test per (quantizer, precision): `pytest -v` shows which precisions each built-in was tried at
CASES = [(n, p.label) for n in QUANTIZERS for p in supported_precisions(PLUGINS.quantizers.get(n))]


@pytest.mark.parametrize(("name", "precision"), CASES, ids=[f"{n}-{p}" for n, p in CASES])
def test_quantizer_contract_on_toy_model(name, precision):
    check_precision(PLUGINS.quantizers.get(name), ToyModel, Precision.parse(precision), options=FAST_OPTIONS.get(name))


@pytest.mark.parametrize("name", QUANTIZERS)
def test_quantizer_declarations_and_error_order(name):
    cls = PLUGINS.quantizers.get(name)
    check_declarations(cls)
    check_error_order(cls, ToyModel, FAST_OPTIONS.get(name))


@pytest.mark.parametrize("name", LOSSES)
def test_loss_contract(name):
    check_loss(PLUGINS.losses.get(name))


@pytest.mark.slow
@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_tiny_family_contract(family):
    fam = PLUGINS.models.get(family)
    check_model_family(fam, fam.sizes[0])


@functools.cache
def _pristine(family: str):
    fam = PLUGINS.models.get(family)
    return fam.build(fam.sizes[0], fam.Options(), torch.device("cpu"))


@pytest.mark.slow
@pytest.mark.parametrize("family", TINY_FAMILIES)
@pytest.mark.parametrize("name", QUANTIZERS)
def test_every_quantizer_runs_on_every_tiny_family(family, name):
    import copy

    cls = PLUGINS.quantizers.get(name)
    model = _pristine(family)
    if cls.trains and not any(PLUGINS.losses.get(l)().applies_to(model.style) is None for l in LOSSES):
        pytest.skip(f"no registered loss applies to {family}")
    check_quantizer(
        cls, lambda: copy.deepcopy(model), supported_precisions(cls), repeat=False, options=FAST_OPTIONS.get(name)
    )
