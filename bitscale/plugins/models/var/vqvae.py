"""VAR's tokenizer: encoder, multi-scale residual quantizer, decoder (official ``models/vqvae.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from bitscale.plugins.models.var.codebook import VectorQuantizer2, VQOutput
from bitscale.plugins.models.var.vae_blocks import Decoder, Encoder

#: Scales of the released 256px models (L = 680 tokens).
PATCH_NUMS_256 = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)


@dataclass(frozen=True)
class VQVAEConfig:
    """Tokenizer hyper-parameters; the defaults are the released ``vae_ch160v4096z32.pth``."""

    vocab_size: int = 4096
    Cvae: int = 32
    ch: int = 160
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    patch_nums: tuple[int, ...] = PATCH_NUMS_256
    share_quant_resi: int = 4
    quant_resi: float = 0.5
    beta: float = 0.25

    @property
    def downsample(self) -> int:
        """Image pixels per latent cell along one side."""
        return 2 ** (len(self.ch_mult) - 1)

    @property
    def image_size(self) -> int:
        return self.patch_nums[-1] * self.downsample

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class VQVAE(nn.Module):
    """Images in [-1, 1] to multi-scale token indices and back."""

    def __init__(self, config: VQVAEConfig) -> None:
        super().__init__()
        self.config = config
        self.V, self.Cvae = config.vocab_size, config.Cvae
        self.encoder = Encoder(config.ch, config.ch_mult, config.num_res_blocks, config.Cvae)
        self.decoder = Decoder(config.ch, config.ch_mult, config.num_res_blocks, config.Cvae)
        self.quantize = VectorQuantizer2(
            config.vocab_size,
            config.Cvae,
            config.patch_nums,
            beta=config.beta,
            quant_resi=config.quant_resi,
            share_quant_resi=config.share_quant_resi,
        )
        self.quant_conv = nn.Conv2d(config.Cvae, config.Cvae, kernel_size=3, padding=1)
        self.post_quant_conv = nn.Conv2d(config.Cvae, config.Cvae, kernel_size=3, padding=1)

    def forward(self, img: torch.Tensor) -> tuple[torch.Tensor, VQOutput]:
        """Training pass: the reconstruction and the quantizer's output."""
        vq = self.quantize(self.quant_conv(self.encoder(img)))
        return self.decoder(self.post_quant_conv(vq.f_hat)), vq

    @torch.no_grad()
    def img_to_idx(self, img: torch.Tensor) -> list[torch.Tensor]:
        """Token indices per scale, each ``(B, pn*pn)``."""
        return self.quantize.f_to_idx(self.quant_conv(self.encoder(img)))

    def fhat_to_img(self, f_hat: torch.Tensor) -> torch.Tensor:
        """Decode ``f_hat`` to an image in [-1, 1]."""
        return self.decoder(self.post_quant_conv(f_hat)).clamp(-1, 1)

    @torch.no_grad()
    def idx_to_img(self, idx: Sequence[torch.Tensor]) -> torch.Tensor:
        """Decode token indices (all scales) to an image in [-1, 1]."""
        return self.fhat_to_img(self.quantize.idx_to_fhat(idx))
