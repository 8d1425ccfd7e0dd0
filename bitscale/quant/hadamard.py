"""Randomized Hadamard rotations (QuaRot, QuIP#-style incoherence processing) and dense rotations.

``Rotation`` is an orthogonal ``n x n`` matrix ``R`` applied to the last dimension of an input,
``x -> x R``. Since ``R R^T = I``, a linear layer whose weight is replaced by ``W R`` computes
the same function on rotated inputs: ``(x R)(W R)^T = x W^T``. Rotations spread an outlier
channel over all channels, which makes per-token activation and per-channel weight grids fit.

Construction (seeded from the caller's ``torch.Generator``, nothing else):

- ``n = 2^k``: ``R = D H_n / sqrt(n)``, ``D = diag(random ±1)``, ``H_n`` the Sylvester
  Walsh-Hadamard matrix, applied by the fast Walsh-Hadamard transform in ``O(n log n)``.
- ``n = m 2^k`` with odd ``m > 1`` (e.g. 96 = 3·32, 192 = 3·64): ``R = D (Q_m ⊗ H_{2^k}) / sqrt(2^k)``
  with ``Q_m`` a seeded random orthogonal ``m x m`` matrix (QR of a Gaussian matrix, signs
  fixed by ``diag(R)`` so it is Haar-distributed). We do not use Hadamard matrices of other
  known orders (12, 20, 28, ... as QuaRot's code does): the Kronecker product with a random
  orthogonal factor is orthogonal for every ``n``, costs ``O(n (log n + m))``, and its dense
  factor is stored (``16 m^2`` bits) and counted when the rotation is applied online.
- ``Rotation.dense(matrix)``: any orthogonal matrix (learned rotations as in SpinQuant).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

#: Bits per stored entry of a dense rotation factor (fp16, as every scale in bitscale).
ROTATION_ENTRY_BITS = 16


def fwht(x: Tensor) -> Tensor:
    """Orthonormal fast Walsh-Hadamard transform along the last dim (a power of two): ``x H / sqrt(n)``."""
    n = x.shape[-1]
    if n & (n - 1):
        raise ValueError(f"the fast Walsh-Hadamard transform needs a power-of-two size, got {n}")
    lead = x.shape[:-1]
    y = x.reshape(-1, n)
    h = 1
    while h < n:
        y = y.view(-1, n // (2 * h), 2, h)
        a, b = y[:, :, 0], y[:, :, 1]
        y = torch.stack((a + b, a - b), dim=2)
        h *= 2
    return y.reshape(*lead, n) / math.sqrt(n)


def hadamard_matrix(n: int) -> Tensor:
    """The Sylvester Walsh-Hadamard matrix of order ``n = 2^k`` (entries ±1, not normalised)."""
    return fwht(torch.eye(n, dtype=torch.float64)) * math.sqrt(n)


def random_orthogonal(m: int, generator: torch.Generator | None = None) -> Tensor:
    """A Haar-random orthogonal ``m x m`` matrix (float64), from ``generator`` only."""
    a = torch.randn(m, m, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    return q * torch.sign(torch.diagonal(r)).unsqueeze(0)


def split_pow2(n: int) -> tuple[int, int]:
    """``n = m * 2^k`` with ``m`` odd: returns ``(m, 2^k)``."""
    if n <= 0:
        raise ValueError(f"rotation size must be positive, got {n}")
    k = n & -n
    return n // k, k


class Rotation(nn.Module):
    """An orthogonal input rotation ``x -> x R`` over the last dimension (see the module docstring)."""

    def __init__(
        self, n: int, signs: Tensor | None = None, odd: Tensor | None = None, matrix: Tensor | None = None
    ) -> None:
        super().__init__()
        self.n = n
        # float32 buffers (so model.to() moves them); orthogonal to ~1e-7, cast to the input's dtype at use.
        self.register_buffer("signs", None if signs is None else signs.to(torch.float32))
        self.register_buffer("odd", None if odd is None else odd.to(torch.float32))
        self.register_buffer("matrix", None if matrix is None else matrix.to(torch.float32))

    @classmethod
    def hadamard(cls, n: int, generator: torch.Generator | None = None, random_signs: bool = True) -> Rotation:
        """Randomized Hadamard rotation of size ``n`` (Kronecker with a random orthogonal odd factor if needed)."""
        m, _k = split_pow2(n)
        signs = None
        if random_signs:
            signs = torch.randint(0, 2, (n,), generator=generator).to(torch.float64) * 2 - 1
        odd = random_orthogonal(m, generator) if m > 1 else None
        return cls(n, signs=signs, odd=odd)

    @classmethod
    def dense(cls, matrix: Tensor, check: bool = True) -> Rotation:
        """A rotation by an explicit orthogonal matrix (checked to 1e-4 unless ``check=False``)."""
        if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"a rotation matrix must be square, got shape {tuple(matrix.shape)}")
        if check:
            eye = torch.eye(matrix.shape[0], dtype=torch.float64)
            err = float((matrix.double() @ matrix.double().t() - eye).abs().max())
            if err > 1e-4:
                raise ValueError(f"rotation matrix is not orthogonal (max |R R^T - I| = {err:.2e})")
        return cls(matrix.shape[0], matrix=matrix)

    @property
    def kind(self) -> str:
        return "dense" if self.matrix is not None else "hadamard"

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.n:
            raise ValueError(f"rotation of size {self.n} applied to an input of width {x.shape[-1]}")
        if self.matrix is not None:
            return x @ self.matrix.to(x.dtype)
        if self.signs is not None:
            x = x * self.signs.to(x.dtype)
        m, k = split_pow2(self.n)
        y = fwht(x) if m == 1 else fwht(x.reshape(*x.shape[:-1], m, k))
        if self.odd is not None:
            # Y = Q^T X H for x viewed as X (m x k): the vector form of x (Q ⊗ H)
            y = torch.einsum("ac,...ak->...ck", self.odd.to(y.dtype), y).reshape(*x.shape[:-1], self.n)
        return y

    def as_matrix(self, dtype: torch.dtype = torch.float64) -> Tensor:
        """``R`` explicitly (``n x n``): the rotation applied to the identity."""
        dev = self.signs if self.signs is not None else self.odd if self.odd is not None else self.matrix
        device = dev.device if dev is not None else None
        return self.forward(torch.eye(self.n, dtype=dtype, device=device))

    @property
    def storage_bits(self) -> int:
        """Bits to keep the rotation for online use: 1 per sign, 16 per dense-factor entry."""
        if self.matrix is not None:
            return ROTATION_ENTRY_BITS * self.n * self.n
        bits = self.n if self.signs is not None else 0
        if self.odd is not None:
            bits += ROTATION_ENTRY_BITS * self.odd.numel()
        return bits

    def extra_repr(self) -> str:
        m, k = split_pow2(self.n)
        if self.matrix is not None:
            return f"n={self.n}, dense"
        return f"n={self.n}, hadamard {k}" + (f" ⊗ orthogonal {m}" if m > 1 else "")
