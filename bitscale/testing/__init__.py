"""Test kit for plugin authors: contract tests, a toy model, fixtures (the pytest plugin).

In your own package's tests::

    from bitscale.testing import QuantizerContract

    class TestMyQuantizer(QuantizerContract):
        quantizer_cls = MyQuantizer          # one test per precision it supports

Fixtures (installed with bitscale as a pytest plugin): ``tiny_model``, ``bitscale_store``,
``register_plugin``, ``bitscale_isolated``, ``bitscale_run_cell`` (docs/plugins.md). The names
below are resolved on first use, so the pytest plugin costs no torch import in other projects.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_PUBLIC = {
    "QuantizerContract": "bitscale.testing.contract_checks",
    "ModelFamilyContract": "bitscale.testing.contract_checks",
    "DistillLossContract": "bitscale.testing.contract_checks",
    "CANDIDATE_PRECISIONS": "bitscale.testing.contract_checks",
    "candidate_precisions": "bitscale.testing.contract_checks",
    "supported_precisions": "bitscale.testing.contract_checks",
    "check_quantizer": "bitscale.testing.contract_checks",
    "check_model_family": "bitscale.testing.contract_checks",
    "check_loss": "bitscale.testing.contract_checks",
    "check_generation_phases": "bitscale.testing.contract_checks",
    "ToyModel": "bitscale.testing.toy",
    "ToyFamily": "bitscale.testing.toy",
}

__all__ = [
    "CANDIDATE_PRECISIONS",
    "DistillLossContract",
    "ModelFamilyContract",
    "QuantizerContract",
    "ToyFamily",
    "ToyModel",
    "candidate_precisions",
    "check_generation_phases",
    "check_loss",
    "check_model_family",
    "check_quantizer",
    "supported_precisions",
]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'bitscale.testing' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from bitscale.testing.contract_checks import (
        CANDIDATE_PRECISIONS,
        DistillLossContract,
        ModelFamilyContract,
        QuantizerContract,
        candidate_precisions,
        check_generation_phases,
        check_loss,
        check_model_family,
        check_quantizer,
        supported_precisions,
    )
    from bitscale.testing.toy import ToyFamily, ToyModel
