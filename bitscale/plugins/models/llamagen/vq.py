"""LlamaGen's VQ image tokenizer (``tokenizer/tokenizer_image/vq_model.py``), reimplemented.

Key names and shapes are the official ones (``encoder.conv_blocks.i.res.j``, ``.attn.j`` with
separate ``q/k/v/proj_out`` 1x1 convs at the lowest resolution, ``encoder.mid.{0,1,2}``, decoder
``conv_blocks.0`` = lowest resolution, ``quantize.embedding``, ``quantize.codebook_used``), so
``vq_ds16_c2i.pt`` loads strictly. ``ch`` (hard-coded 128 officially) is configurable so a tiny
tokenizer stays small; GroupNorm(32) needs every width to be a multiple of 32.

The codebook is L2-normalised when used, like the official ``codebook_l2_norm=True`` default.
``codebook_used`` is kept as a plain buffer (officially an ``nn.Parameter`` inside a buffer,
which breaks training-mode forward outside ``no_grad``); it is not updated here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class VQConfig:
    """Tokenizer architecture; defaults are ``VQ_16`` (16x downsampling, 16384 codes of dim 8)."""

    codebook_size: int = 16384
    codebook_embed_dim: int = 8
    ch: int = 128
    ch_mult: tuple[int, ...] = field(default=(1, 1, 2, 2, 4))
    z_channels: int = 256
    num_res_blocks: int = 2  # encoder; the decoder has one more per level, as officially
    commit_loss_beta: float = 0.25

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with a 1x1 ``nin_shortcut`` when the width changes."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.norm1 = _norm(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2 = _norm(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.nin_shortcut is None else self.nin_shortcut(x)) + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention with separate ``q``, ``k``, ``v``, ``proj_out`` 1x1 convs."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.norm = _norm(c)
        self.q = nn.Conv2d(c, c, 1)
        self.k = nn.Conv2d(c, c, 1)
        self.v = nn.Conv2d(c, c, 1)
        self.proj_out = nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = x.shape
        h = self.norm(x)
        q, k, v = (m(h).reshape(b, 1, c, hh * ww).transpose(-1, -2) for m in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)  # scale 1/sqrt(c), as officially
        return x + self.proj_out(out.transpose(-1, -2).reshape(b, c, hh, ww))


class Downsample(nn.Module):
    """Stride-2 3x3 conv after zero-padding right and bottom by one."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest 2x upsampling then a 3x3 conv."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Encoder(nn.Module):
    """Images ``(B, 3, H, W)`` to features ``(B, z_channels, H/ds, W/ds)``."""

    def __init__(self, cfg: VQConfig) -> None:
        super().__init__()
        ch, mult, n = cfg.ch, cfg.ch_mult, cfg.num_res_blocks
        self.conv_in = nn.Conv2d(3, ch, 3, padding=1)
        self.conv_blocks = nn.ModuleList()
        c_in = ch
        for level, m in enumerate(mult):
            block = nn.Module()
            block.res, block.attn = nn.ModuleList(), nn.ModuleList()
            for _ in range(n):
                block.res.append(ResnetBlock(c_in, ch * m))
                c_in = ch * m
                if level == len(mult) - 1:
                    block.attn.append(AttnBlock(c_in))
            if level != len(mult) - 1:
                block.downsample = Downsample(c_in)
            self.conv_blocks.append(block)
        self.mid = nn.ModuleList([ResnetBlock(c_in, c_in), AttnBlock(c_in), ResnetBlock(c_in, c_in)])
        self.norm_out = _norm(c_in)
        self.conv_out = nn.Conv2d(c_in, cfg.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for block in self.conv_blocks:
            for i, res in enumerate(block.res):
                h = res(h)
                if len(block.attn):
                    h = block.attn[i](h)
            if hasattr(block, "downsample"):
                h = block.downsample(h)
        for m in self.mid:
            h = m(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """Features ``(B, z_channels, h, w)`` to images; ``conv_blocks.0`` is the lowest resolution."""

    def __init__(self, cfg: VQConfig) -> None:
        super().__init__()
        ch, mult, n = cfg.ch, cfg.ch_mult, cfg.num_res_blocks + 1
        c_in = ch * mult[-1]
        self.conv_in = nn.Conv2d(cfg.z_channels, c_in, 3, padding=1)
        self.mid = nn.ModuleList([ResnetBlock(c_in, c_in), AttnBlock(c_in), ResnetBlock(c_in, c_in)])
        self.conv_blocks = nn.ModuleList()
        for level in reversed(range(len(mult))):
            block = nn.Module()
            block.res, block.attn = nn.ModuleList(), nn.ModuleList()
            for _ in range(n):
                block.res.append(ResnetBlock(c_in, ch * mult[level]))
                c_in = ch * mult[level]
                if level == len(mult) - 1:
                    block.attn.append(AttnBlock(c_in))
            if level != 0:
                block.upsample = Upsample(c_in)
            self.conv_blocks.append(block)
        self.norm_out = _norm(c_in)
        self.conv_out = nn.Conv2d(c_in, 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(z)
        for m in self.mid:
            h = m(h)
        for block in self.conv_blocks:
            for i, res in enumerate(block.res):
                h = res(h)
                if len(block.attn):
                    h = block.attn[i](h)
            if hasattr(block, "upsample"):
                h = block.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    """Nearest-code quantizer over an L2-normalised codebook (cosine nearest neighbour)."""

    def __init__(self, n_codes: int, dim: int, beta: float) -> None:
        super().__init__()
        self.beta = beta
        self.embedding = nn.Embedding(n_codes, dim, _weight=torch.empty(n_codes, dim))
        if not self.embedding.weight.is_meta:  # meta: nothing to fill (and the fill would be slow)
            with torch.no_grad():
                self.embedding.weight.uniform_(-1.0 / n_codes, 1.0 / n_codes)
                self.embedding.weight.copy_(F.normalize(self.embedding.weight, dim=-1))
        self.register_buffer("codebook_used", torch.zeros(65536))

    def codebook(self) -> torch.Tensor:
        return F.normalize(self.embedding.weight, dim=-1)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``z`` ``(B, D, h, w)`` to (quantized with straight-through gradient, indices ``(B, h, w)``, loss)."""
        zf = F.normalize(z.permute(0, 2, 3, 1), dim=-1)
        emb = self.codebook()
        # On the unit sphere the nearest code is the one with the largest dot product.
        idx = (zf.reshape(-1, zf.shape[-1]) @ emb.t()).argmax(dim=1).view(zf.shape[:-1])
        zq = emb[idx]
        loss = F.mse_loss(zq, zf.detach()) + self.beta * F.mse_loss(zq.detach(), zf)
        zq = zf + (zq - zf).detach()
        return zq.permute(0, 3, 1, 2), idx, loss

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        """Codes ``(B, h, w)`` to normalised code vectors ``(B, D, h, w)``."""
        return self.codebook()[idx].permute(0, 3, 1, 2).contiguous()


class VQModel(nn.Module):
    """Encoder, ``quant_conv``, quantizer, ``post_quant_conv``, decoder."""

    def __init__(self, cfg: VQConfig) -> None:
        super().__init__()
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quantize = VectorQuantizer(cfg.codebook_size, cfg.codebook_embed_dim, cfg.commit_loss_beta)
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.codebook_embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(cfg.codebook_embed_dim, cfg.z_channels, 1)

    def encode_indices(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] ``(B, 3, H, W)`` to code indices ``(B, H/ds * W/ds)`` in raster order."""
        _, idx, _ = self.quantize(self.quant_conv(self.encoder(images)))
        return idx.flatten(1)

    def decode_code(self, idx: torch.Tensor) -> torch.Tensor:
        """Code indices ``(B, h*w)`` (square grid) or ``(B, h, w)`` to images, nominally in [-1, 1]."""
        if idx.dim() == 2:
            side = round(idx.shape[1] ** 0.5)
            idx = idx.view(idx.shape[0], side, side)
        return self.decoder(self.post_quant_conv(self.quantize.lookup(idx)))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction, codebook + commitment loss) for training."""
        zq, _, loss = self.quantize(self.quant_conv(self.encoder(images)))
        return self.decoder(self.post_quant_conv(zq)), loss
