"""Test kit for plugin authors: a toy model, fixtures (pytest plugin) and reusable contract checks.

In your own package's tests::

    from bitscale.testing.contract_checks import QuantizerContract

    class TestMyQuantizer(QuantizerContract):
        quantizer_cls = MyQuantizer
"""
