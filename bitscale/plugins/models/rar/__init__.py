"""RAR (randomized-order autoregressive over VQ tokens): ``rar-tiny`` and released ``rar``."""

from bitscale import hookimpl
from bitscale.plugins.models.rar.released import RARFamily
from bitscale.plugins.models.rar.tiny import RARTinyFamily


@hookimpl
def register_models(register):
    """Register the tiny digits family and the released checkpoints."""
    register(RARTinyFamily())
    register(RARFamily())
