"""MAR (masked autoregression over continuous tokens): ``mar-tiny`` and the released ``mar`` (B/L/H)."""

from bitscale import hookimpl
from bitscale.plugins.models.mar.released import MARFamily
from bitscale.plugins.models.mar.tiny import MARTinyFamily


@hookimpl
def register_models(register):
    """Register the tiny digits zoo and the released checkpoints."""
    register(MARTinyFamily())
    register(MARFamily())
