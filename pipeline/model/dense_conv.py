"""Causal convolution y = k * u as one dense Toeplitz matrix product per channel, for short sequences on CPUs.

    y[b, h, :] = u[b, h, :] · T_h,     T_h[s, t] = k[h, t − s] for t ≥ s, 0 otherwise      (T_h upper triangular, L × L)

T is k zero-padded on the left, cut into its windows of length L in reverse order (H·L² values), and the product is
one batched GEMM of 2·B·H·L² flops, against the FFT convolution's transforms, complex products and their per-call
overheads, which dominate at small L. Autograd differentiates it: ∂/∂u = g·Tᵀ, and ∂/∂k sums uᵀ·g along
T's diagonals (the backward of the windows). On a 2-core CPU (B 64, H 64) it beats the FFT convolution forward up to
L ≈ 128 and forward + backward up to L ≈ 64, where `MAX_LENGTH` puts the switch (benchmarks/conv_speed.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

MAX_LENGTH = 64  # the longest sequence causal_conv gives this form on a CPU


def toeplitz_matrices(k: torch.Tensor) -> torch.Tensor:
    """T (H, L, L) of k (H, L): T[h, s, t] = k[h, t − s] for t ≥ s, else 0."""
    length = k.shape[-1]
    return F.pad(k, (length - 1, 0)).unfold(-1, length, 1).flip(-2)


def dense_conv(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """y[..., t] = Σ_{s ≤ t} k[..., t − s]·u[..., s] for u (B, H, L) and k (H, L)."""
    return torch.matmul(u.transpose(0, 1), toeplitz_matrices(k)).transpose(0, 1)
