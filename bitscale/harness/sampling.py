"""How a cell draws its samples: fixed chunks, each with its own labels and RNG stream.

A cell's ``num_samples`` images are cut into chunks of ``batch_size`` (the last one may be
shorter). Chunk ``k`` samples the labels ``balanced_labels(n)[k*bs:(k+1)*bs]`` with a generator
seeded from ``(cell seed, k)`` alone. Chunk boundaries depend on the cell's evaluation settings
only (which its hash covers), never on how many shards or workers draw them, so any split of the
chunks into shards (``--sample-shards N``) on any executor yields byte-identical images.

Chunk 0 keeps the cell's own seed: a cell that fits in one batch draws exactly what it drew when
a cell was one sequential stream (before protocol version 2). Later chunks start fresh streams,
since a generator cannot be advanced past what an earlier batch consumed without running it.

Token models that declare a ``coupling`` (protocol version 3) get ``TokenNoise`` for their chunk:
one key per sample, a hash of (cell seed, global sample index), from which every token's Gumbel
noise is computed. Two models sampled with the same seed then share the noise of every token of
every sample, whatever the batch size: the coupling behind paired evaluation (``evaluation.paired``).
"""

from __future__ import annotations

import hashlib

import torch

from bitscale.harness.noise import TokenNoise, sample_keys


def balanced_labels(n: int, num_classes: int) -> torch.Tensor:
    """``n`` labels cycling over the classes (FID protocols sample an equal number per class)."""
    return torch.arange(n) % num_classes


def num_chunks(num_samples: int, batch_size: int) -> int:
    return -(-num_samples // batch_size)


def chunk_seed(seed: int, chunk: int) -> int:
    """The seed of chunk ``chunk`` of a cell seeded ``seed``: a pure function of the two."""
    if chunk == 0:
        return seed
    digest = hashlib.sha256(f"bitscale-sample-chunk:{seed}:{chunk}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1  # manual_seed takes a non-negative 63-bit int


def shard_chunks(total_chunks: int, shards: int) -> list[range]:
    """Split chunks ``0..total_chunks-1`` into at most ``shards`` contiguous, non-empty ranges."""
    shards = max(1, min(shards, total_chunks))
    base, extra = divmod(total_chunks, shards)
    out, start = [], 0
    for i in range(shards):
        stop = start + base + (i < extra)
        out.append(range(start, stop))
        start = stop
    return out


def sample_chunks(
    model, num_samples: int, batch_size: int, seed: int, chunks: range
) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 images (B, 3, H, W) on the CPU, their labels) of the given chunks of one cell."""
    labels = balanced_labels(num_samples, model.num_classes)
    device = model.device if model.device.type != "meta" else torch.device("cpu")
    images, drawn = [], []
    model.module.eval()
    with torch.no_grad():
        for k in chunks:
            part = labels[k * batch_size : (k + 1) * batch_size]
            gen = torch.Generator(device=device).manual_seed(chunk_seed(seed, k))
            if getattr(model, "coupling", None):
                start = k * batch_size
                noise = TokenNoise(sample_keys(seed, torch.arange(start, start + len(part))))
                out = model.sample(part.to(model.device), gen, noise=noise)
            else:
                out = model.sample(part.to(model.device), gen)
            if out.dtype != torch.uint8 or out.dim() != 4 or out.shape[1] != 3:
                raise TypeError(f"sample() must return uint8 (B, 3, H, W), got {out.dtype} {tuple(out.shape)}")
            images.append(out.cpu())
            drawn.append(part)
    return torch.cat(images), torch.cat(drawn)
