"""The VAR transformer (official ``models/var.py``): next-scale prediction with AdaLN blocks.

State-dict names and shapes match the released checkpoints exactly (``pos_start``, ``pos_1LC``,
buffers ``lvl_1L`` and ``attn_bias_for_masking``, ``word_embed``, ``class_emb`` with a null class
at index ``num_classes``, ``lvl_embed``, ``blocks.i.*``, ``head_nm``, ``head``). The tokenizer is
not part of this module: sampling takes its quantizer as an argument, as upstream's ``vae_proxy``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from bitscale.harness.noise import TokenNoise
from bitscale.plugins.models.var.blocks import AdaLNBeforeHead, AdaLNSelfAttn, SharedAdaLin
from bitscale.plugins.models.var.codebook import VectorQuantizer2
from bitscale.plugins.models.var.generation import VarSteps
from bitscale.plugins.models.var.vqvae import PATCH_NUMS_256


@dataclass(frozen=True)
class VARConfig:
    """Transformer hyper-parameters (``official(depth)`` gives the released ones)."""

    depth: int = 16
    embed_dim: int = 1024
    num_heads: int = 16
    vocab_size: int = 4096
    Cvae: int = 32
    num_classes: int = 1000
    patch_nums: tuple[int, ...] = PATCH_NUMS_256
    mlp_ratio: float = 4.0
    norm_eps: float = 1e-6
    cond_drop_rate: float = 0.1
    attn_l2_norm: bool = True
    shared_aln: bool = False
    drop_path_rate: float = 0.0

    @classmethod
    def official(cls, depth: int, **overrides: Any) -> VARConfig:
        """``build_vae_var``'s rule: width ``64 * depth``, ``depth`` heads, drop path ``0.1 * depth / 24``."""
        base = dict(depth=depth, embed_dim=64 * depth, num_heads=depth, drop_path_rate=0.1 * depth / 24)
        return cls(**{**base, **overrides})

    @property
    def L(self) -> int:
        """Tokens per image over all scales."""
        return sum(pn * pn for pn in self.patch_nums)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class VAR(nn.Module):
    """Class-conditional next-scale prediction transformer."""

    def __init__(self, config: VARConfig, init: bool = True) -> None:
        super().__init__()
        self.config = c = config
        self.C, self.V, self.Cvae = c.embed_dim, c.vocab_size, c.Cvae
        self.num_classes, self.cond_drop_rate = c.num_classes, c.cond_drop_rate
        self.patch_nums = tuple(c.patch_nums)
        self.L = c.L
        self.first_l = self.patch_nums[0] ** 2
        self.begin_ends = []
        cur = 0
        for pn in self.patch_nums:
            self.begin_ends.append((cur, cur + pn * pn))
            cur += pn * pn

        C = self.C
        self.word_embed = nn.Linear(self.Cvae, C)
        self.class_emb = nn.Embedding(self.num_classes + 1, C)  # the last row is the null class
        self.pos_start = nn.Parameter(torch.zeros(1, self.first_l, C))
        self.pos_1LC = nn.Parameter(torch.zeros(1, self.L, C))
        self.lvl_embed = nn.Embedding(len(self.patch_nums), C)
        self.shared_ada_lin = nn.Sequential(nn.SiLU(), SharedAdaLin(C, 6 * C)) if c.shared_aln else nn.Identity()
        dpr = torch.linspace(0, c.drop_path_rate, c.depth, device="cpu").tolist()
        self.blocks = nn.ModuleList(
            AdaLNSelfAttn(
                C,
                C,
                c.num_heads,
                mlp_ratio=c.mlp_ratio,
                norm_eps=c.norm_eps,
                shared_aln=c.shared_aln,
                attn_l2_norm=c.attn_l2_norm,
                drop_path=dpr[i],
            )
            for i in range(c.depth)
        )
        # Level of each token, and the block-causal mask: a token sees its own and earlier scales.
        d = torch.cat([torch.full((pn * pn,), i) for i, pn in enumerate(self.patch_nums)]).view(1, self.L, 1)
        dT = d.transpose(1, 2)
        self.register_buffer("lvl_1L", dT[:, 0].contiguous())
        mask = torch.where(d >= dT, 0.0, -torch.inf).reshape(1, 1, self.L, self.L)
        self.register_buffer("attn_bias_for_masking", mask.contiguous())
        self.head_nm = AdaLNBeforeHead(C, C, norm_eps=c.norm_eps)
        self.head = nn.Linear(C, self.V)
        if init and self.pos_1LC.device.type != "meta":
            self.init_weights()

    @torch.no_grad()
    def init_weights(
        self, init_adaln: float = 0.5, init_adaln_gamma: float = 1e-5, init_head: float = 0.02, init_std: float = -1
    ) -> None:
        """The official initialisation (``build_vae_var`` defaults); ``init_std < 0`` means ``sqrt(1/3C)``."""
        if init_std < 0:
            init_std = math.sqrt(1 / self.C / 3)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=init_std)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.Embedding):
                nn.init.trunc_normal_(m.weight, std=init_std)
        for p in (self.pos_start, self.pos_1LC):
            nn.init.trunc_normal_(p, std=math.sqrt(1 / self.C / 3))
        self.head.weight.mul_(init_head)
        self.head.bias.zero_()
        self.head_nm.ada_lin[-1].weight.mul_(init_adaln)
        self.head_nm.ada_lin[-1].bias.zero_()
        depth = len(self.blocks)
        for block in self.blocks:
            block.attn.proj.weight.div_(math.sqrt(2 * depth))
            block.ffn.fc2.weight.div_(math.sqrt(2 * depth))
            if block.shared_aln:
                block.ada_gss[:, :, 2:].mul_(init_adaln)
                block.ada_gss[:, :, :2].mul_(init_adaln_gamma)
            else:
                lin = block.ada_lin[-1]
                lin.weight[2 * self.C :].mul_(init_adaln)
                lin.weight[: 2 * self.C].mul_(init_adaln_gamma)  # gamma1, gamma2: blocks start near identity
                lin.bias.zero_()

    def _logits(self, h: torch.Tensor, cond_BD: torch.Tensor) -> torch.Tensor:
        return self.head(self.head_nm(h, cond_BD))

    def forward(
        self, label_B: torch.Tensor, x_BLCv_wo_first_l: torch.Tensor, cond_drop_rate: float | None = None
    ) -> torch.Tensor:
        """Teacher-forced logits ``(B, L, V)``.

        ``x_BLCv_wo_first_l`` is the quantizer's ``idx_to_var_input`` (``B, L - first_l, Cvae``).
        Labels are replaced by the null class with probability ``cond_drop_rate`` (default: the
        config's rate in training mode, 0 otherwise; upstream also drops in eval mode, a bug).
        """
        if cond_drop_rate is None:
            cond_drop_rate = self.cond_drop_rate if self.training else 0.0
        B = x_BLCv_wo_first_l.shape[0]
        if cond_drop_rate > 0:
            drop = torch.rand(B, device=label_B.device) < cond_drop_rate
            label_B = torch.where(drop, torch.full_like(label_B, self.num_classes), label_B)
        sos = cond_BD = self.class_emb(label_B)
        sos = sos.unsqueeze(1).expand(B, self.first_l, -1) + self.pos_start.expand(B, self.first_l, -1)
        x = torch.cat((sos, self.word_embed(x_BLCv_wo_first_l.to(sos.dtype))), dim=1)
        x = x + self.lvl_embed(self.lvl_1L.expand(B, -1)) + self.pos_1LC
        cond = self.shared_ada_lin(cond_BD)
        for block in self.blocks:
            x = block(x, cond, attn_bias=self.attn_bias_for_masking)
        return self._logits(x, cond_BD)

    @contextlib.contextmanager
    def kv_cache(self) -> Iterator[None]:
        """Enable every block's KV cache for one generation; always cleared afterwards."""
        for b in self.blocks:
            b.attn.kv_caching(True)
        try:
            yield
        finally:
            for b in self.blocks:
                b.attn.kv_caching(False)

    @torch.no_grad()
    def autoregressive_infer_cfg(
        self,
        label_B: torch.Tensor,
        quantizer: VectorQuantizer2,
        generator: torch.Generator | None,
        cfg: float = 1.5,
        top_k: int = 0,
        top_p: float = 0.0,
        use_kv_cache: bool = True,
        noise: TokenNoise | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Generate scale by scale (``generation.VarSteps``); return the final ``f_hat`` and the token indices
        per scale.

        Tokens are drawn with top-k then top-p and ``torch.multinomial(generator=generator)``, or, with
        ``noise``, by Gumbel-max from the coupled noise at each token's position in the whole sequence.
        ``use_kv_cache=False`` recomputes the whole prefix at every scale under the block-causal
        mask: the same result at a higher cost, kept for throughput comparisons.
        """
        steps = VarSteps(self, label_B, quantizer, generator, cfg, top_k, top_p, use_kv_cache, noise=noise)
        tokens: list[torch.Tensor] = []
        with steps:
            for si in range(steps.num_steps):
                idx_Bl = steps.draw(steps.extract(si))
                tokens.append(idx_Bl)
                steps.advance(si, quantizer.embedding(idx_Bl))
        return steps.f_hat, tokens


def official_var_config(depth: int, patch_nums: Sequence[int] = PATCH_NUMS_256) -> VARConfig:
    """The released class-conditional ImageNet model of ``depth`` (d16, d20, d24, d30; d36 is 512px, shared AdaLN)."""
    return VARConfig.official(depth, patch_nums=tuple(patch_nums), shared_aln=depth == 36)
