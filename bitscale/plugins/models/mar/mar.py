"""The official MAR network (LTH14/mar ``models/mar.py`` + ``models/diffloss.py``), written anew.

MAR (Li et al. 2024, "Autoregressive Image Generation without Vector Quantization") predicts
*continuous* latent tokens of a KL autoencoder: a bidirectional MAE-style encoder sees the known
tokens (plus ``buffer_size`` copies of the class embedding), a decoder fills the unknown positions
with a mask token, and a small MLP (``SimpleMLPAdaLN``) conditioned on the decoder output ``z``
denoises each unknown token with a per-token diffusion process (the "diffusion loss").

Parameter names and shapes are the official ones, so ``checkpoint-last.pth`` loads strictly:
``class_emb``, ``fake_latent``, ``z_proj``, ``z_proj_ln``, ``encoder_pos_embed_learned``,
``encoder_blocks.i.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}`` (timm ``Block``,
exact GELU), ``encoder_norm``, ``decoder_embed``, ``mask_token``, ``decoder_pos_embed_learned``,
``decoder_blocks.i.*``, ``decoder_norm``, ``diffusion_pos_embed_learned`` and
``diffloss.net.{time_embed.mlp.{0,2}, cond_embed, input_proj, res_blocks.i.{in_ln, mlp.{0,2},
adaLN_modulation.1}, final_layer.{linear, adaLN_modulation.1}}``.

Departures, none in the maths of a forward pass: label dropout, mask sampling and the
diffusion batch multiplier live in the training loop (``training.py``), so the module is
deterministic in train mode too; attention/projection dropout (0.1 officially, training only)
is not built.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from bitscale.plugins.models.dit.dit import Attention, Mlp, TimestepEmbedder


@dataclass(frozen=True)
class MARConfig:
    """Architecture of one MAR (defaults: the official constructor's, MAR-L's widths)."""

    img_size: int = 256
    vae_stride: int = 16
    patch_size: int = 1
    encoder_embed_dim: int = 1024
    encoder_depth: int = 16
    encoder_num_heads: int = 16
    decoder_embed_dim: int = 1024
    decoder_depth: int = 16
    decoder_num_heads: int = 16
    mlp_ratio: float = 4.0
    vae_embed_dim: int = 16
    mask_ratio_min: float = 0.7
    label_drop_prob: float = 0.1
    class_num: int = 1000
    buffer_size: int = 64
    diffloss_d: int = 3
    diffloss_w: int = 1024
    diffusion_batch_mul: int = 4

    @property
    def seq_side(self) -> int:
        return self.img_size // self.vae_stride // self.patch_size

    @property
    def seq_len(self) -> int:
        return self.seq_side**2

    @property
    def token_dim(self) -> int:
        return self.vae_embed_dim * self.patch_size**2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _widths(dim: int, depth: int, heads: int) -> dict[str, int]:
    return {
        "encoder_embed_dim": dim,
        "encoder_depth": depth,
        "encoder_num_heads": heads,
        "decoder_embed_dim": dim,
        "decoder_depth": depth,
        "decoder_num_heads": heads,
    }


#: Released models (official ``mar_base/large/huge`` and the README's diffusion-head sizes).
RELEASED_MAR: dict[str, dict[str, int]] = {
    "mar-b": _widths(768, 12, 12) | {"diffloss_d": 6, "diffloss_w": 1024},
    "mar-l": _widths(1024, 16, 16) | {"diffloss_d": 8, "diffloss_w": 1280},
    "mar-h": _widths(1280, 20, 16) | {"diffloss_d": 12, "diffloss_w": 1536},
}


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN on (N, C) rows (no token axis: the head sees one token per row)."""
    return x * (1 + scale) + shift


class Block(nn.Module):
    """timm ``Block`` (pre-norm, qkv bias, exact GELU, no layer scale), eval-mode maths."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), approximate="none")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ResBlock(nn.Module):
    """The head's residual MLP block with adaLN (shift, scale, gate) from the condition."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.in_ln = nn.LayerNorm(channels, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(channels, channels), nn.SiLU(), nn.Linear(channels, channels))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(channels, 3 * channels))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        shift, scale, gate = self.adaLN_modulation(y).chunk(3, dim=-1)
        return x + gate * self.mlp(modulate(self.in_ln(x), shift, scale))


class FinalLayer(nn.Module):
    def __init__(self, channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm_final = nn.LayerNorm(channels, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(channels, out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(channels, 2 * channels))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class SimpleMLPAdaLN(nn.Module):
    """The diffusion head: ``(x_t (N, C), t (N,), z (N, D)) -> (N, 2C)`` (noise, variance interpolation)."""

    def __init__(self, in_channels: int, model_channels: int, z_channels: int, num_res_blocks: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.time_embed = TimestepEmbedder(model_channels)
        self.cond_embed = nn.Linear(z_channels, model_channels)
        self.input_proj = nn.Linear(in_channels, model_channels)
        self.res_blocks = nn.ModuleList(ResBlock(model_channels) for _ in range(num_res_blocks))
        self.final_layer = FinalLayer(model_channels, 2 * in_channels)

    def initialize_weights(self) -> None:
        """Official init: xavier linears, N(0, 0.02) time MLP, zeroed adaLN and output layers."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.time_embed.mlp[0].weight, std=0.02)
        nn.init.normal_(self.time_embed.mlp[2].weight, std=0.02)
        for layer in [b.adaLN_modulation[-1] for b in self.res_blocks] + [
            self.final_layer.adaLN_modulation[-1],
            self.final_layer.linear,
        ]:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        x = self.input_proj(x)
        y = self.time_embed(t) + self.cond_embed(c)
        for block in self.res_blocks:
            x = block(x, y)
        return self.final_layer(x, y)


class DiffLoss(nn.Module):
    """Holds the head as ``net`` (official key prefix ``diffloss.net.``); the processes are in ``diffusion.py``."""

    def __init__(self, target_channels: int, z_channels: int, depth: int, width: int) -> None:
        super().__init__()
        self.in_channels = target_channels
        self.net = SimpleMLPAdaLN(target_channels, width, z_channels, depth)


class MAR(nn.Module):
    """Masked autoregressive encoder/decoder over continuous tokens ``(B, seq_len, token_dim)``."""

    def __init__(self, cfg: MARConfig) -> None:
        super().__init__()
        self.config = cfg
        self.num_classes = cfg.class_num
        self.seq_len, self.buffer_size = cfg.seq_len, cfg.buffer_size
        e, d, positions = cfg.encoder_embed_dim, cfg.decoder_embed_dim, cfg.seq_len + cfg.buffer_size
        self.class_emb = nn.Embedding(cfg.class_num, e)
        self.fake_latent = nn.Parameter(torch.zeros(1, e))  # the null class of CFG
        self.z_proj = nn.Linear(cfg.token_dim, e)
        self.z_proj_ln = nn.LayerNorm(e, eps=1e-6)
        self.encoder_pos_embed_learned = nn.Parameter(torch.zeros(1, positions, e))
        self.encoder_blocks = nn.ModuleList(
            Block(e, cfg.encoder_num_heads, cfg.mlp_ratio) for _ in range(cfg.encoder_depth)
        )
        self.encoder_norm = nn.LayerNorm(e, eps=1e-6)
        self.decoder_embed = nn.Linear(e, d)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        self.decoder_pos_embed_learned = nn.Parameter(torch.zeros(1, positions, d))
        self.decoder_blocks = nn.ModuleList(
            Block(d, cfg.decoder_num_heads, cfg.mlp_ratio) for _ in range(cfg.decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(d, eps=1e-6)
        self.diffusion_pos_embed_learned = nn.Parameter(torch.zeros(1, cfg.seq_len, d))
        self.diffloss = DiffLoss(cfg.token_dim, d, cfg.diffloss_d, cfg.diffloss_w)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Official init (skipped on the meta device): N(0, 0.02) tables, xavier linears, unit LayerNorms."""
        if self.mask_token.is_meta:
            return
        for p in (
            self.class_emb.weight,
            self.fake_latent,
            self.mask_token,
            self.encoder_pos_embed_learned,
            self.decoder_pos_embed_learned,
            self.diffusion_pos_embed_learned,
        ):
            nn.init.normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        self.diffloss.net.initialize_weights()  # built after the MAR init officially: its own init wins

    # ------------------------------------------------------------------ tokens

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """Latents ``(B, C, H, W)`` to tokens ``(B, h*w, C*p*p)`` (official channel-major patches)."""
        b, c, h, w = x.shape
        p = self.config.patch_size
        x = x.reshape(b, c, h // p, p, w // p, p)
        return torch.einsum("nchpwq->nhwcpq", x).reshape(b, (h // p) * (w // p), c * p * p)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        p, c, s = self.config.patch_size, self.config.vae_embed_dim, self.config.seq_side
        x = x.reshape(x.shape[0], s, s, c, p, p)
        return torch.einsum("nhwcpq->nchpwq", x).reshape(x.shape[0], c, s * p, s * p)

    # ------------------------------------------------------------------ forward

    def class_embedding(self, labels: torch.Tensor) -> torch.Tensor:
        """Class rows; label ``class_num`` (one past the last class) is the learned null ``fake_latent``."""
        null = labels == self.num_classes
        emb = self.class_emb(labels.clamp(max=self.num_classes - 1))
        return torch.where(null[:, None], self.fake_latent.to(emb.dtype).expand_as(emb), emb)

    def forward_mae_encoder(
        self, tokens: torch.Tensor, mask: torch.Tensor, class_embedding: torch.Tensor
    ) -> torch.Tensor:
        """Known tokens (``mask == 0``) and the class buffer through the encoder: ``(B, buffer + known, E)``.

        Every row must have the same number of known tokens (as the official sampler and training have).
        """
        x = self.z_proj(tokens)
        b, _, e = x.shape
        x = torch.cat([class_embedding.unsqueeze(1).expand(b, self.buffer_size, e).to(x.dtype), x], dim=1)
        keep = torch.cat([torch.ones(b, self.buffer_size, device=x.device), 1 - mask], dim=1).bool()
        x = self.z_proj_ln(x + self.encoder_pos_embed_learned)
        x = x[keep].reshape(b, -1, e)
        for block in self.encoder_blocks:
            x = block(x)
        return self.encoder_norm(x)

    def forward_mae_decoder(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Encoder output back to every position, mask tokens at the unknown ones: ``z (B, seq_len, D)``."""
        x = self.decoder_embed(x)
        b = x.shape[0]
        keep = torch.cat([torch.ones(b, self.buffer_size, device=x.device), 1 - mask], dim=1).bool()
        full = self.mask_token.to(x.dtype).expand(b, keep.shape[1], -1).clone()
        full[keep] = x.reshape(-1, x.shape[-1])
        x = full + self.decoder_pos_embed_learned
        for block in self.decoder_blocks:
            x = block(x)
        x = self.decoder_norm(x)[:, self.buffer_size :]
        return x + self.diffusion_pos_embed_learned

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The condition ``z`` of every position for ``labels`` (``class_num``: the null class)."""
        return self.forward_mae_decoder(self.forward_mae_encoder(tokens, mask, self.class_embedding(labels)), mask)
