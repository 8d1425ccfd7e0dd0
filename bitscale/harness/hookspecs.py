"""The three hooks a bitscale plugin can implement."""

import pluggy

hookspec = pluggy.HookspecMarker("bitscale")
hookimpl = pluggy.HookimplMarker("bitscale")


@hookspec
def register_models(register):
    """Register model families: call ``register(family)`` with a ``ModelFamily`` instance."""


@hookspec
def register_quantizers(register):
    """Register quantizers: call ``register(QuantizerClass)`` with a ``Quantizer`` subclass."""


@hookspec
def register_losses(register):
    """Register distillation losses: call ``register(LossClass)`` with a ``DistillLoss`` subclass."""
