"""VAR's scale-by-scale generation as explicit steps: the one loop behind ``sample`` and ``bitscale analyze``.

Step ``si`` (scale ``pn x pn``): **extract** runs the blocks on the current token map and returns
the guided logits ``(B, pn*pn, V)``; **reconstruct** draws a token per position (top-k, top-p,
multinomial from the generator) and looks it up in the codebook, ``(B, pn*pn, Cvae)``;
**advance** adds those embeddings to ``f_hat`` through the Phi conv and builds the next scale's
input. The representation space is the codebook: discrete.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Literal

import torch
from torch import nn

from bitscale.harness.noise import TokenNoise
from bitscale.harness.phases import GenerationPhases
from bitscale.plugins.models.var.sampling import sample_top_k_top_p

if TYPE_CHECKING:
    from collections.abc import Callable

    from bitscale.plugins.models.var.codebook import VectorQuantizer2


class VarSteps(GenerationPhases):
    """One class-conditional VAR generation (``VAR.autoregressive_infer_cfg`` drives it to the end).

    Guidance ramps linearly over scales: ``t = cfg * si / (K - 1)`` and
    ``logits = (1 + t) * cond - t * uncond``, with the batch doubled as [cond; null class]
    (skipped when ``cfg == 0``, where it cannot change the logits). ``use_kv_cache=False``
    recomputes the whole prefix at every scale under the block-causal mask (same result).
    """

    space: Literal["discrete", "continuous"] = "discrete"

    # ``var`` is a ``transformer.VAR``, typed as a module: transformer imports this file, not the reverse.
    def __init__(
        self,
        var: nn.Module,
        label_B: torch.Tensor,
        quantizer: VectorQuantizer2,
        generator: torch.Generator | None,
        cfg: float = 1.5,
        top_k: int = 0,
        top_p: float = 0.0,
        use_kv_cache: bool = True,
        decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
        noise: TokenNoise | None = None,
    ) -> None:
        self.var, self.quantizer, self.generator, self.noise = var, quantizer, generator, noise
        self.cfg, self.top_k, self.top_p, self.use_kv_cache = cfg, top_k, top_p, use_kv_cache
        self._decode = decode
        self.B = B = label_B.shape[0]
        self.num_steps = len(var.patch_nums)
        self.guided = cfg != 0
        labels = torch.cat((label_B, torch.full_like(label_B, var.num_classes))) if self.guided else label_B
        sos = self.cond_BD = var.class_emb(labels)
        self.lvl_pos = var.lvl_embed(var.lvl_1L) + var.pos_1LC
        self.next_map = sos.unsqueeze(1).expand(-1, var.first_l, -1) + var.pos_start + self.lvl_pos[:, : var.first_l]
        self.cond = var.shared_ada_lin(self.cond_BD)
        # f_hat lives in the tokenizer's dtype (fp32), whatever the transformer's dtype is.
        pn = var.patch_nums[-1]
        self.f_hat = quantizer.embedding.weight.new_zeros(B, var.Cvae, pn, pn)
        self.prefix: list[torch.Tensor] = []  # all inputs so far (only without the KV cache)
        self.cur_L = 0
        self._stack = contextlib.ExitStack()
        if use_kv_cache:
            self._stack.enter_context(var.kv_cache())

    def step_label(self, step: int) -> str:
        pn = self.var.patch_nums[step]
        return f"scale {pn}x{pn}"

    def extract(self, step: int) -> torch.Tensor:
        var, pn = self.var, self.var.patch_nums[step]
        self.cur_L += pn * pn
        if self.use_kv_cache:
            x, bias = self.next_map, None
        else:
            self.prefix.append(self.next_map)
            x, bias = torch.cat(self.prefix, dim=1), var.attn_bias_for_masking[:, :, : self.cur_L, : self.cur_L]
        for block in var.blocks:
            x = block(x, self.cond, attn_bias=bias)
        logits = var._logits(x[:, -pn * pn :], self.cond_BD)
        if self.guided:
            t = self.cfg * step / (self.num_steps - 1)
            logits = (1 + t) * logits[: self.B] - t * logits[self.B :]
        return logits

    def draw(self, logits: torch.Tensor) -> torch.Tensor:
        """Token indices ``(B, pn*pn)`` drawn from ``logits`` (of the last ``extract``ed scale) with top-k / top-p;
        with coupled ``noise`` each token draws at its position in the whole sequence."""
        positions = torch.arange(self.cur_L - logits.shape[1], self.cur_L)
        return sample_top_k_top_p(
            logits, top_k=self.top_k, top_p=self.top_p, generator=self.generator, noise=self.noise, positions=positions
        )

    def reconstruct(self, step: int, features: torch.Tensor) -> torch.Tensor:
        return self.quantizer.embedding(self.draw(features))

    def advance(self, step: int, reconstruction: torch.Tensor) -> None:
        var, pn, B = self.var, self.var.patch_nums[step], self.B
        h = reconstruction.transpose(1, 2).reshape(B, var.Cvae, pn, pn)
        self.f_hat, nxt = self.quantizer.next_autoregressive_input(step, self.f_hat, h)
        if step != self.num_steps - 1:
            nxt = nxt.view(B, var.Cvae, -1).transpose(1, 2)
            next_pn2 = var.patch_nums[step + 1] ** 2
            self.next_map = (
                var.word_embed(nxt.to(self.lvl_pos.dtype)) + self.lvl_pos[:, self.cur_L : self.cur_L + next_pn2]
            )
            if self.guided:
                self.next_map = self.next_map.repeat(2, 1, 1)  # cond and uncond share the tokens

    def output(self) -> torch.Tensor:
        return self.f_hat

    def images(self) -> torch.Tensor:
        if self._decode is None:
            raise RuntimeError("this VAR generation has no decoder (built without a VQ-VAE)")
        return self._decode(self.f_hat)

    def close(self) -> None:
        self._stack.close()
