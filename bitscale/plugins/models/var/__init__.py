"""VAR (next-scale prediction, Tian et al. 2024) as two model families.

``var-tiny`` trains the architecture at tiny sizes on 16x16 digits (CPU, CI, the default run);
``var`` loads the released ImageNet-256 checkpoints d16-d30 from local files. Both share one
implementation whose state-dict names and shapes are exactly upstream's.
"""

from bitscale import hookimpl
from bitscale.plugins.models.var.model import VarBatch, VarModel
from bitscale.plugins.models.var.released import VarFamily, VarOptions
from bitscale.plugins.models.var.tiny import VarTinyFamily, VarTinyOptions

__all__ = ["VarBatch", "VarFamily", "VarModel", "VarOptions", "VarTinyFamily", "VarTinyOptions", "register_models"]


@hookimpl
def register_models(register):
    """Register ``var-tiny`` and ``var``."""
    register(VarTinyFamily())
    register(VarFamily())
