"""PAR (parallelized autoregressive, LlamaGen-derived): ``par-tiny`` and released ``par``."""

from bitscale import hookimpl
from bitscale.plugins.models.par.tiny import PARTinyFamily


@hookimpl
def register_models(register):
    """Register the tiny digits family (the released checkpoints follow in ``released.py``)."""
    register(PARTinyFamily())
