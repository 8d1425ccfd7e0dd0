"""Coupled token noise: a pure function of (seed, sample, position, token), the right distribution,
and the same tokens for a model and its twin whatever the batch size."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from bitscale.harness.noise import TokenNoise, mix32, sample_keys
from bitscale.harness.sampling import sample_chunks
from bitscale.plugins.models.llamagen.generate import generate
from bitscale.plugins.models.llamagen.gpt import GPT, GPTConfig
from bitscale.plugins.models.var import VarModel
from bitscale.plugins.models.var.sampling import sample_top_k_top_p
from bitscale.plugins.models.var.transformer import VAR, VARConfig
from bitscale.plugins.models.var.vqvae import VQVAE, VQVAEConfig

SMALL_VAE = VQVAEConfig(vocab_size=64, Cvae=8, ch=32, ch_mult=(1, 2, 2), num_res_blocks=1, patch_nums=(1, 2, 4))
SMALL_VAR = VARConfig(depth=2, embed_dim=32, num_heads=2, vocab_size=64, Cvae=8, num_classes=10, patch_nums=(1, 2, 4))
SMALL_GPT = GPTConfig(
    dim=128,
    n_layer=2,
    n_head=2,
    vocab_size=64,
    num_classes=10,
    block_size=16,
    multiple_of=32,
    token_dropout_p=0.0,
    resid_dropout_p=0.0,
    ffn_dropout_p=0.0,
)


def _var_model(seed: int = 0) -> VarModel:
    torch.manual_seed(seed)
    var, vae = VAR(SMALL_VAR), VQVAE(SMALL_VAE)
    with torch.no_grad():
        for block in var.blocks:
            block.ada_lin[-1].weight.normal_(0, 0.2)
        var.head.weight.normal_(0, 0.3)
    return VarModel(var.eval(), vae.eval(), "digits16", {"cfg": 1.5, "top_k": 20, "top_p": 0.9}, None)


def _gpt(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    gpt = GPT(SMALL_GPT)
    with torch.no_grad():
        gpt.output.weight.normal_(0, 0.5)
    return gpt.eval()


def _perturbed(module: torch.nn.Module, scale: float) -> torch.nn.Module:
    """A copy with every weight matrix moved by ``scale`` of its own std: a stand-in for quantization error."""
    twin = copy.deepcopy(module)
    g = torch.Generator().manual_seed(99)
    with torch.no_grad():
        for p in twin.parameters():
            if p.dim() == 2:
                p.add_(torch.randn(p.shape, generator=g) * p.std() * scale)
    return twin


def test_mix32_is_the_32_bit_hash_without_overflow():
    # Reference: the same mix in Python's unbounded integers, reduced mod 2**32.
    def ref(x: int) -> int:
        m = 0xFFFFFFFF
        x ^= x >> 16
        x = (x * 0x7FEB352D) & m
        x ^= x >> 15
        x = (x * 0x846CA68B) & m
        return x ^ (x >> 16)

    xs = [0, 1, 2, 12345, 2**31 - 1, 2**31, 2**32 - 1, 0xDEADBEEF]
    assert mix32(torch.tensor(xs)).tolist() == [ref(x) for x in xs]


def test_noise_is_a_function_of_seed_sample_and_position_only():
    whole = TokenNoise(sample_keys(7, torch.arange(10))).uniforms(torch.arange(5), 32, "cpu")
    part = TokenNoise(sample_keys(7, torch.arange(4, 10))).uniforms(torch.tensor([3, 4]), 32, "cpu")
    assert torch.equal(part, whole[4:, 3:5])  # any batch, any subset of positions: the same numbers
    other = TokenNoise(sample_keys(8, torch.arange(10))).uniforms(torch.arange(5), 32, "cpu")
    assert not torch.equal(other, whole)
    assert 0 < whole.min() and whole.max() < 1
    assert len(torch.unique(whole)) == whole.numel()  # no repeats across samples, positions and tokens
    big = sample_keys(2**40 + 3, torch.arange(3))
    assert not torch.equal(big, sample_keys(3, torch.arange(3)))  # the seed's high bits count


def test_gumbel_max_draws_the_softmax_distribution():
    logits = torch.tensor([0.0, 1.0, 2.0, -1.0, float("-inf")])
    n = 100_000
    tokens = TokenNoise(sample_keys(0, torch.arange(n))).draw(logits.expand(n, 1, 5).clone(), torch.tensor([0]))
    freq = torch.bincount(tokens.flatten(), minlength=5).double() / n
    p = logits.softmax(0).double()
    assert freq[4] == 0  # a filtered token is never drawn
    assert torch.allclose(freq, p, atol=4 * (p * (1 - p) / n).sqrt().max().item())


def test_var_top_k_top_p_with_noise_keeps_the_filters():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 3, 40, generator=g)
    noise = TokenNoise(sample_keys(1, torch.arange(50)))
    idx = sample_top_k_top_p(logits, top_k=5, top_p=0.0, generator=None, noise=noise, positions=torch.arange(3))
    top5 = logits.topk(5, dim=-1).indices
    assert (idx[..., None] == top5).any(-1).all()


def test_identical_var_models_draw_identical_images_and_a_perturbed_one_nearly():
    model = _var_model()
    twin = VarModel(copy.deepcopy(model.module), model.vae, model.dataset, model.sampler, None)
    a, _ = sample_chunks(model, 40, 10, 3, range(4))
    b, _ = sample_chunks(twin, 40, 10, 3, range(4))
    assert torch.equal(a, b)
    near = VarModel(_perturbed(model.module, 0.02), model.vae, model.dataset, model.sampler, None)
    c, _ = sample_chunks(near, 40, 10, 3, range(4))
    same = (c == a).flatten(1).all(1).float().mean().item()
    far, _ = sample_chunks(model, 40, 10, 4, range(4))  # another seed: independent draws
    same_far = (far == a).flatten(1).all(1).float().mean().item()
    assert same >= 0.5 > same_far


def test_var_images_do_not_depend_on_the_batch_size():
    model = _var_model()
    by10, labels10 = sample_chunks(model, 40, 10, 5, range(4))
    by40, labels40 = sample_chunks(model, 40, 40, 5, range(1))
    by7, _ = sample_chunks(model, 40, 7, 5, range(6))
    assert torch.equal(labels10, labels40)
    # The noise is identical; float rounding of batched matmuls may differ, so allow a rare flip.
    for other in (by40, by7):
        assert (other == by10).flatten(1).all(1).float().mean().item() >= 0.95


def test_llamagen_coupled_generation_is_deterministic_and_cache_independent():
    gpt = _gpt()
    labels = torch.arange(6) % 10
    noise = TokenNoise(sample_keys(0, torch.arange(6)))
    kw = dict(cfg=2.0, top_k=20, top_p=0.9, temperature=1.2)
    a = generate(gpt, labels, noise=noise, **kw)
    b = generate(copy.deepcopy(gpt), labels, noise=noise, generator=torch.Generator().manual_seed(5), **kw)
    c = generate(gpt, labels, noise=noise, use_cache=False, **kw)
    assert torch.equal(a, b)  # the generator is not used when noise is given
    assert torch.equal(a, c)
    part = generate(gpt, labels[3:], noise=TokenNoise(sample_keys(0, torch.arange(3, 6))), **kw)
    assert (part == a[3:]).float().mean().item() >= 0.95  # sample 3..5 alone: same noise, same tokens


def test_llamagen_coupling_keeps_a_perturbed_model_close():
    gpt = _gpt()
    labels = torch.arange(40) % 10
    kw = dict(cfg=2.0, top_k=0, top_p=1.0)
    noise = TokenNoise(sample_keys(1, torch.arange(40)))
    a = generate(gpt, labels, noise=noise, **kw)
    near = generate(_perturbed(gpt, 0.02), labels, noise=noise, **kw)
    indep = generate(_perturbed(gpt, 0.02), labels, noise=TokenNoise(sample_keys(2, torch.arange(40))), **kw)
    agree, agree_indep = (near == a).float().mean().item(), (indep == a).float().mean().item()
    assert agree >= 0.6 and agree > agree_indep + 0.3, (agree, agree_indep)


@pytest.mark.parametrize("seed", [0, 2**62 + 1])
def test_sample_keys_accept_the_whole_seed_range(seed):
    keys = sample_keys(seed, torch.arange(4))
    assert keys.dtype == torch.int64 and bool(((keys >= 0) & (keys < 2**32)).all())
    assert np.unique(keys.numpy()).size == 4
