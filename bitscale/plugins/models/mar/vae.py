"""MAR's KL-16 autoencoder (LDM's ``AutoencoderKL`` as in LTH14/mar ``models/vae.py``), official names.

Why not DiT's diffusers ``AutoencoderKL``: the maths is LDM's in both, but MAR's encoder has
attention blocks at its lowest resolution (``attn_resolutions=(16,)`` of 256) which diffusers'
``DownEncoderBlock2D`` lacks, and the parameter names differ (``encoder.down.i.block.j`` vs
``encoder.down_blocks.i.resnets.j``, 1x1 convs vs linears for attention). So the released
family builds this module, whose state dict is ``kl16.ckpt``'s ``model`` entry, names and
shapes. (The tiny zoo reuses dit-tiny's diffusers autoencoder: that artifact is shared.)

Layout: ``ch=128``, ``ch_mult=(1, 1, 2, 2, 4)`` (stride 16), 2 res blocks per level (3 in the
decoder), GroupNorm(32, eps 1e-6), swish, single-head attention with ``q/k/v/proj_out`` 1x1
convs, asymmetric (0, 1, 0, 1) padding before each stride-2 conv, nearest upsampling, 16 latent
channels, ``quant_conv`` 32 -> 32 and ``post_quant_conv`` 16 -> 16 (1x1). Latents are scaled by
0.2325 for MAR (``vae.decode(z / 0.2325)``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: ``x = posterior.sample() * 0.2325`` in the official training and sampling code.
KL16_LATENT_SCALE = 0.2325


def _swish(x: torch.Tensor) -> torch.Tensor:
    # LDM's ``x * sigmoid(x)``; F.silu rounds differently (the full decoder moved by ~1e-5)
    return x * torch.sigmoid(x)


def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, c, eps=1e-6)


class ResnetBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2, self.conv2 = _norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        if c_in != c_out:
            self.nin_shortcut = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(_swish(self.norm1(x)))
        h = self.conv2(_swish(self.norm2(h)))
        return (self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x) + h


class AttnBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.norm = _norm(c)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(c, c, 1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n = self.norm(x)
        q, k, v = (f(n).reshape(b, c, h * w) for f in (self.q, self.k, self.v))
        # One head; LDM's order of operations (scores scaled after the product), not fused SDPA,
        # whose other rounding moves the full-size decoder's output by ~1e-5.
        weights = torch.softmax(torch.bmm(q.transpose(1, 2), k) * c**-0.5, dim=2)
        return x + self.proj_out(torch.bmm(v, weights.transpose(1, 2)).reshape(b, c, h, w))


class _Resample(nn.Module):
    def __init__(self, c: int, down: bool) -> None:
        super().__init__()
        self.down = down
        self.conv = nn.Conv2d(c, c, 3, stride=2 if down else 1, padding=0 if down else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down:
            return self.conv(F.pad(x, (0, 1, 0, 1)))
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _mid(c: int) -> nn.Module:
    mid = nn.Module()
    mid.block_1, mid.attn_1, mid.block_2 = ResnetBlock(c, c), AttnBlock(c), ResnetBlock(c, c)
    return mid


class Encoder(nn.Module):
    def __init__(
        self,
        ch: int,
        ch_mult: tuple[int, ...],
        z_channels: int,
        num_res_blocks: int = 2,
        attn_resolutions: tuple[int, ...] = (16,),
        resolution: int = 256,
    ) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(3, ch, 3, padding=1)
        self.down = nn.ModuleList()
        c_in, res = ch, resolution
        for i, mult in enumerate(ch_mult):
            level = nn.Module()
            level.block, level.attn = nn.ModuleList(), nn.ModuleList()
            for _ in range(num_res_blocks):
                level.block.append(ResnetBlock(c_in, ch * mult))
                c_in = ch * mult
                if res in attn_resolutions:
                    level.attn.append(AttnBlock(c_in))
            if i != len(ch_mult) - 1:
                level.downsample = _Resample(c_in, down=True)
                res //= 2
            self.down.append(level)
        self.mid = _mid(c_in)
        self.norm_out = _norm(c_in)
        self.conv_out = nn.Conv2d(c_in, 2 * z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            for j, block in enumerate(level.block):
                h = block(h)
                if len(level.attn):
                    h = level.attn[j](h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(_swish(self.norm_out(h)))


class Decoder(nn.Module):
    """``up.0`` is the highest resolution (LDM order); no attention outside the middle."""

    def __init__(self, ch: int, ch_mult: tuple[int, ...], z_channels: int, num_res_blocks: int = 2) -> None:
        super().__init__()
        c_in = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, c_in, 3, padding=1)
        self.mid = _mid(c_in)
        levels = []
        for i in reversed(range(len(ch_mult))):
            level = nn.Module()
            level.block, level.attn = nn.ModuleList(), nn.ModuleList()
            for _ in range(num_res_blocks + 1):
                level.block.append(ResnetBlock(c_in, ch * ch_mult[i]))
                c_in = ch * ch_mult[i]
            if i != 0:
                level.upsample = _Resample(c_in, down=False)
            levels.insert(0, level)
        self.up = nn.ModuleList(levels)
        self.norm_out = _norm(c_in)
        self.conv_out = nn.Conv2d(c_in, 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(self.conv_in(z))))
        for level in reversed(self.up):
            for block in level.block:
                h = block(h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(_swish(self.norm_out(h)))


class KLAutoencoder(nn.Module):
    """``encode`` -> posterior (mean, std); ``decode(z)`` -> images in about [-1, 1]."""

    def __init__(
        self, embed_dim: int = 16, ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4), ch: int = 128, resolution: int = 256
    ) -> None:
        super().__init__()
        self.encoder = Encoder(ch, ch_mult, embed_dim, resolution=resolution)
        self.decoder = Decoder(ch, ch_mult, embed_dim)
        self.quant_conv = nn.Conv2d(2 * embed_dim, 2 * embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, embed_dim, 1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.quant_conv(self.encoder(x)).chunk(2, dim=1)
        return mean, torch.exp(0.5 * logvar.clamp(-30.0, 20.0))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(z))
