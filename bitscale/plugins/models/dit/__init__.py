"""DiT (latent diffusion transformer): ``dit-tiny`` and the released ``dit`` (XL/2)."""

from bitscale import hookimpl
from bitscale.plugins.models.dit.released import DiTFamily
from bitscale.plugins.models.dit.tiny import DiTTinyFamily


@hookimpl
def register_models(register):
    """Register the tiny digits zoo and the released checkpoint."""
    register(DiTTinyFamily())
    register(DiTFamily())
