"""The MaskGIT-VQGAN tokenizer RAR generates for (1d-tokenizer ``modeling/modules/maskgit_vqgan.py``
and ``titok.PretrainedTokenizer``), reimplemented.

A VQGAN without attention: GroupNorm(32)-SiLU-conv residual blocks, average-pool downsampling,
nearest + conv upsampling, a 1024 x 256 codebook with Euclidean nearest-code search and no
``quant_conv``. ``maskgit-vqgan-imagenet-f16-256.bin`` loads strictly: ``encoder.down.i.block.j``,
``encoder.mid.j``, ``decoder.up.i.block.j`` / ``.upsample_conv`` (``up.0`` is the full
resolution; the decoder runs ``up`` in reverse), ``quantize.embedding``.

Official details kept as they are:

- "same" padding of the official ``Conv2dSame`` is ordinary symmetric padding for the stride-1,
  odd-kernel convolutions used here, so plain ``Conv2d(padding=k // 2)`` computes the same thing
  with the same parameter names;
- a residual block whose width changes adds ``nin_shortcut`` applied to its *output* (not to its
  input) -- the official code does so and the released weights were trained with it;
- images are in [0, 1] on both ends; the decoder output is clamped to [0, 1].

``encode_indices``/``decode_code`` speak bitscale's [-1, 1] image convention (the same methods as
LlamaGen's tokenizer), converting at the edges.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class MaskGITVQConfig:
    """Tokenizer architecture; the defaults are the released f16 ImageNet tokenizer's."""

    hidden_channels: int = 128
    channel_mult: tuple[int, ...] = field(default=(1, 1, 2, 2, 4))
    num_res_blocks: int = 2
    z_channels: int = 256
    codebook_size: int = 1024
    num_channels: int = 3

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, c, eps=1e-6, affine=True)


def _conv(c_in: int, c_out: int, k: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=bias)


class ResnetBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.norm1 = _norm(c_in)
        self.conv1 = _conv(c_in, c_out, 3, bias=False)
        self.norm2 = _norm(c_out)
        self.conv2 = _conv(c_out, c_out, 3, bias=False)
        self.nin_shortcut = _conv(c_out, c_out, 1, bias=False) if c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (x if self.nin_shortcut is None else self.nin_shortcut(h))


class _Level(nn.Module):
    def __init__(self, c_in: int, c_out: int, n: int) -> None:
        super().__init__()
        self.block = nn.ModuleList(ResnetBlock(c_in if i == 0 else c_out, c_out) for i in range(n))


class Encoder(nn.Module):
    def __init__(self, cfg: MaskGITVQConfig) -> None:
        super().__init__()
        ch, mult = cfg.hidden_channels, cfg.channel_mult
        self.conv_in = _conv(cfg.num_channels, ch, 3, bias=False)
        ins = (1, *mult)
        self.down = nn.ModuleList(_Level(ch * ins[i], ch * mult[i], cfg.num_res_blocks) for i in range(len(mult)))
        mid = ch * mult[-1]
        self.mid = nn.ModuleList(ResnetBlock(mid, mid) for _ in range(cfg.num_res_blocks))
        self.norm_out = _norm(mid)
        self.conv_out = _conv(mid, cfg.z_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for i, level in enumerate(self.down):
            for block in level.block:
                h = block(h)
            if i != len(self.down) - 1:
                h = F.avg_pool2d(h, kernel_size=2, stride=2)
        for block in self.mid:
            h = block(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, cfg: MaskGITVQConfig) -> None:
        super().__init__()
        ch, mult, n = cfg.hidden_channels, cfg.channel_mult, cfg.num_res_blocks
        top = ch * mult[-1]
        self.conv_in = _conv(cfg.z_channels, top, 3)
        self.mid = nn.ModuleList(ResnetBlock(top, top) for _ in range(n))
        self.up = nn.ModuleList()
        for i in range(len(mult)):
            c_in = ch * (mult[-1] if i == len(mult) - 1 else mult[i + 1])
            level = _Level(c_in, ch * mult[i], n)
            if i != 0:
                level.upsample_conv = _conv(ch * mult[i], ch * mult[i], 3)
            self.up.append(level)
        self.norm_out = _norm(ch * mult[0])
        self.conv_out = _conv(ch * mult[0], cfg.num_channels, 3)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(z)
        for block in self.mid:
            h = block(h)
        for level in reversed(self.up):
            for block in level.block:
                h = block(h)
            if hasattr(level, "upsample_conv"):
                h = level.upsample_conv(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    """Euclidean nearest code (``|z|^2 + |e|^2 - 2 z.e``, as officially) over an unnormalised codebook."""

    def __init__(self, n_codes: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n_codes, dim)

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """``z`` ``(B, D, h, w)`` to codes ``(B, h * w)``."""
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        emb = self.embedding.weight.t()
        dist = torch.addmm(flat.pow(2).sum(1, keepdim=True) + emb.pow(2).sum(0, keepdim=True), flat, emb, alpha=-2.0)
        return dist.argmin(dim=1).view(z.shape[0], -1)

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        """Codes ``(B, h * w)`` (square grid) to code vectors ``(B, D, h, w)``."""
        side = round(idx.shape[1] ** 0.5)
        return self.embedding(idx).view(idx.shape[0], side, side, -1).permute(0, 3, 1, 2)


class MaskGITVQ(nn.Module):
    """The tokenizer: ``encoder``, ``quantize``, ``decoder``."""

    def __init__(self, cfg: MaskGITVQConfig = MaskGITVQConfig()) -> None:
        super().__init__()
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quantize = VectorQuantizer(cfg.codebook_size, cfg.z_channels)

    def encode_tokens(self, images01: torch.Tensor) -> torch.Tensor:
        """Official ``encode``: images in [0, 1] to codes ``(B, h * w)``."""
        return self.quantize.indices(self.encoder(images01))

    def decode_tokens(self, idx: torch.Tensor) -> torch.Tensor:
        """Official ``decode_tokens``: codes ``(B, h * w)`` to images clamped to [0, 1]."""
        return self.decoder(self.quantize.lookup(idx)).clamp(0.0, 1.0)

    def encode_indices(self, images: torch.Tensor) -> torch.Tensor:
        """bitscale convention: images in [-1, 1] to codes."""
        return self.encode_tokens((images + 1) / 2)

    def decode_code(self, idx: torch.Tensor) -> torch.Tensor:
        """bitscale convention: codes to images in [-1, 1]."""
        return self.decode_tokens(idx) * 2 - 1
