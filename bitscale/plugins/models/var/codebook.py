"""VAR's multi-scale residual vector quantizer (``VectorQuantizer2``) and its residual convs Phi.

An encoder feature map ``f`` (``B, Cvae, h, w`` with ``h = w = patch_nums[-1]``) is tokenized
coarse to fine: at scale ``k`` the remaining residual is area-downsampled to ``pn x pn``, each
vector is replaced by the index of its nearest codebook entry (Euclidean distance), the chosen
entries are bicubic-upsampled back to ``h x w``, passed through a Phi conv and added to
``f_hat`` (and removed from the residual). The transformer predicts the indices of scale
``k`` from everything before it; its inputs are ``f_hat`` so far, area-resized to scale ``k``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class Phi(nn.Conv2d):
    """3x3 conv blended with its input: ``h * (1 - r) + conv(h) * r`` (``r = quant_resi = 0.5``)."""

    def __init__(self, channels: int, resi_ratio: float) -> None:
        super().__init__(channels, channels, kernel_size=3, stride=1, padding=1)
        self.resi_ratio = abs(resi_ratio)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h * (1 - self.resi_ratio) + super().forward(h) * self.resi_ratio


def _ticks(k: int) -> np.ndarray:
    # The official tick positions (numpy, so ties at 0.5 break exactly as upstream).
    return np.linspace(1 / 3 / k, 1 - 1 / 3 / k, k) if k == 4 else np.linspace(1 / 2 / k, 1 - 1 / 2 / k, k)


class PhiPartiallyShared(nn.Module):
    """``K`` Phi convs shared by all scales; scale at ``t = si/(S-1)`` uses the nearest tick."""

    def __init__(self, qresi_ls: nn.ModuleList) -> None:
        super().__init__()
        self.qresi_ls = qresi_ls
        self.ticks = _ticks(len(qresi_ls))

    def __getitem__(self, at: float) -> nn.Module:
        return self.qresi_ls[int(np.argmin(np.abs(self.ticks - at)))]


class PhiShared(nn.Module):
    """One Phi for every scale (``share_quant_resi=1``)."""

    def __init__(self, qresi: nn.Module) -> None:
        super().__init__()
        self.qresi = qresi

    def __getitem__(self, at: float) -> nn.Module:
        return self.qresi


class PhiNonShared(nn.ModuleList):
    """One Phi per scale (``share_quant_resi=0``)."""

    def __init__(self, qresi: list[nn.Module]) -> None:
        super().__init__(qresi)
        self.ticks = _ticks(len(qresi))

    def __getitem__(self, at: float) -> nn.Module:  # type: ignore[override]
        return super().__getitem__(int(np.argmin(np.abs(self.ticks - at))))


class VQOutput(NamedTuple):
    """What a training pass of the quantizer gives."""

    f_hat: torch.Tensor  # quantized features, straight-through gradient to the encoder
    loss: torch.Tensor  # commitment + codebook loss, averaged over scales
    idx: list[torch.Tensor]  # token indices per scale, (B, pn*pn)
    z: list[torch.Tensor]  # the vectors quantized at each scale, (B*pn*pn, Cvae), detached


class VectorQuantizer2(nn.Module):
    """Multi-scale residual VQ with codebook ``embedding (V, Cvae)`` and Phi convs ``quant_resi``."""

    def __init__(
        self,
        vocab_size: int,
        Cvae: int,
        patch_nums: Sequence[int],
        beta: float = 0.25,
        quant_resi: float = 0.5,
        share_quant_resi: int = 4,
    ) -> None:
        super().__init__()
        self.vocab_size, self.Cvae = vocab_size, Cvae
        self.patch_nums = tuple(patch_nums)
        self.beta = beta

        def phi() -> nn.Module:
            return Phi(Cvae, quant_resi) if abs(quant_resi) > 1e-6 else nn.Identity()

        if share_quant_resi == 0:
            self.quant_resi: nn.Module = PhiNonShared([phi() for _ in self.patch_nums])
        elif share_quant_resi == 1:
            self.quant_resi = PhiShared(phi())
        else:
            self.quant_resi = PhiPartiallyShared(nn.ModuleList([phi() for _ in range(share_quant_resi)]))
        # Per-scale codebook hit counts; part of the official state dict (unused at inference).
        self.register_buffer("ema_vocab_hit_SV", torch.zeros(len(self.patch_nums), vocab_size))
        self.embedding = nn.Embedding(vocab_size, Cvae)

    @property
    def num_scales(self) -> int:
        return len(self.patch_nums)

    def _phi(self, si: int) -> nn.Module:
        return self.quant_resi[si / (self.num_scales - 1)]

    def _nearest(self, z_NC: torch.Tensor) -> torch.Tensor:
        """Index of the nearest codebook entry (Euclidean) for each row of ``z_NC``."""
        w = self.embedding.weight.detach()
        d = z_NC.square().sum(1, keepdim=True) + w.square().sum(1) - 2 * z_NC @ w.T
        return d.argmin(dim=1)

    def _upsample(self, h: torch.Tensor, si: int) -> torch.Tensor:
        size = self.patch_nums[-1]
        return F.interpolate(h, size=(size, size), mode="bicubic") if si != self.num_scales - 1 else h

    def forward(self, f: torch.Tensor) -> VQOutput:
        """Training pass (upstream's ``forward``, which is only used to train the tokenizer).

        The loss averages over scales ``beta * |sg(f_hat) - f|^2 + |f_hat - sg(f)|^2``, which
        trains the encoder (commitment), the codebook and the Phi convs.
        """
        B, C, H, W = f.shape
        f = f.float()
        f_ng = f.detach()
        f_rest, f_hat = f_ng.clone(), torch.zeros_like(f_ng)
        loss = f.new_zeros(())
        idx_all: list[torch.Tensor] = []
        z_all: list[torch.Tensor] = []
        for si, pn in enumerate(self.patch_nums):
            z = F.interpolate(f_rest, size=(pn, pn), mode="area") if si != self.num_scales - 1 else f_rest
            z_all.append(z.permute(0, 2, 3, 1).reshape(-1, C))
            idx = self._nearest(z_all[-1]).view(B, pn, pn)
            h = self._phi(si)(self._upsample(self.embedding(idx).permute(0, 3, 1, 2), si))
            f_hat = f_hat + h
            f_rest = f_rest - h.detach()
            loss = loss + self.beta * F.mse_loss(f_hat.detach(), f) + F.mse_loss(f_hat, f_ng)
            idx_all.append(idx.reshape(B, pn * pn))
        f_hat_st = (f_hat.detach() - f_ng) + f  # straight-through: decoder gradient reaches f
        return VQOutput(f_hat_st, loss / self.num_scales, idx_all, z_all)

    @torch.no_grad()
    def f_to_idx(self, f: torch.Tensor) -> list[torch.Tensor]:
        """Token indices per scale, each ``(B, pn*pn)`` (official ``f_to_idxBl_or_fhat``)."""
        B, C, H, W = f.shape
        assert H == W == self.patch_nums[-1], f"latent {H}x{W} does not match patch_nums {self.patch_nums}"
        f_rest, out = f.float().clone(), []
        for si, pn in enumerate(self.patch_nums):
            z = F.interpolate(f_rest, size=(pn, pn), mode="area") if si != self.num_scales - 1 else f_rest
            idx = self._nearest(z.permute(0, 2, 3, 1).reshape(-1, C)).view(B, pn, pn)
            f_rest -= self._phi(si)(self._upsample(self.embedding(idx).permute(0, 3, 1, 2), si))
            out.append(idx.reshape(B, pn * pn))
        return out

    def _embed(self, idx_Bl: torch.Tensor, pn: int) -> torch.Tensor:
        B = idx_Bl.shape[0]
        return self.embedding(idx_Bl).transpose(1, 2).reshape(B, self.Cvae, pn, pn)

    def idx_to_var_input(self, idx: Sequence[torch.Tensor]) -> torch.Tensor:
        """Teacher-forcing input ``(B, L - first_l, Cvae)``: ``f_hat`` after each scale, resized to the next."""
        B, size = idx[0].shape[0], self.patch_nums[-1]
        f_hat = self.embedding.weight.new_zeros(B, self.Cvae, size, size)
        nxt = []
        for si in range(self.num_scales - 1):
            h = F.interpolate(self._embed(idx[si], self.patch_nums[si]), size=(size, size), mode="bicubic")
            f_hat = f_hat + self._phi(si)(h)
            pn = self.patch_nums[si + 1]
            nxt.append(F.interpolate(f_hat, size=(pn, pn), mode="area").view(B, self.Cvae, -1).transpose(1, 2))
        return torch.cat(nxt, dim=1)

    def idx_to_fhat(self, idx: Sequence[torch.Tensor]) -> torch.Tensor:
        """The final ``f_hat`` (``B, Cvae, h, w``) that the decoder turns into an image."""
        B, size = idx[0].shape[0], self.patch_nums[-1]
        f_hat = self.embedding.weight.new_zeros(B, self.Cvae, size, size)
        for si, pn in enumerate(self.patch_nums):
            f_hat = f_hat + self._phi(si)(self._upsample(self._embed(idx[si], pn), si))
        return f_hat

    def next_autoregressive_input(
        self, si: int, f_hat: torch.Tensor, h_BChw: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Add scale ``si``'s tokens (embedded, ``B, Cvae, pn, pn``) to ``f_hat``; return it and the next input map."""
        f_hat = f_hat + self._phi(si)(self._upsample(h_BChw, si))
        if si == self.num_scales - 1:
            return f_hat, f_hat
        pn = self.patch_nums[si + 1]
        return f_hat, F.interpolate(f_hat, size=(pn, pn), mode="area")
