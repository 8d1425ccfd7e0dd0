"""LlamaGen (raster-order autoregressive over VQ tokens): ``llamagen-tiny`` and released ``llamagen``."""

from bitscale import hookimpl
from bitscale.plugins.models.llamagen.released import LlamaGenFamily
from bitscale.plugins.models.llamagen.tiny import LlamaGenTinyFamily


@hookimpl
def register_models(register):
    """Register the tiny digits zoo and the released checkpoints."""
    register(LlamaGenTinyFamily())
    register(LlamaGenFamily())
