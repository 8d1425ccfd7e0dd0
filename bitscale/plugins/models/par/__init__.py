"""PAR (parallelized autoregressive, LlamaGen-derived): ``par-tiny`` and released ``par``."""

from bitscale import hookimpl
from bitscale.plugins.models.par.released import PARFamily
from bitscale.plugins.models.par.tiny import PARTinyFamily


@hookimpl
def register_models(register):
    """Register the tiny digits family and the released checkpoints."""
    register(PARTinyFamily())
    register(PARFamily())
