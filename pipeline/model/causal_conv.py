"""The S4D layer's causal convolution y = k * u, in the form that is fastest where it runs:
- Toeplitz products on tensor cores (toeplitz_conv.py) where TF32 matrix products are allowed, on a CUDA device, in
  float32, for L ≤ toeplitz_conv.MAX_LENGTH and fewer than 2³¹ values;
- one dense Toeplitz matrix product per channel (dense_conv.py) on a CPU for L ≤ dense_conv.MAX_LENGTH;
- else the FFT convolution (fft_conv.py), which is also what runs on GPUs where Triton is not installed (it ships
  for Linux x86-64 only)."""
from __future__ import annotations

import torch

from pipeline.model import dense_conv
from pipeline.model.fft_conv import fft_conv

# The Toeplitz form runs on CUDA devices only, so it is loaded only where there is one: its imports (Triton,
# torch._dynamo) take a CPU-only process about 2 s.
toeplitz_conv = None
if torch.cuda.is_available():
    try:
        from pipeline.model import toeplitz_conv
    except ImportError:
        pass


def runs_as_toeplitz(u: torch.Tensor) -> bool:
    """Triton installed, u on a CUDA device in float32, L ≤ MAX_LENGTH, fewer than 2³¹ values (the kernels index
    with 32-bit integers) and TF32 allowed."""
    return (toeplitz_conv is not None and u.is_cuda and u.dtype == torch.float32
            and u.shape[-1] <= toeplitz_conv.MAX_LENGTH and u.numel() < 2**31 and toeplitz_conv.tf32_allowed())


def runs_dense(u: torch.Tensor) -> bool:
    """u on a CPU with L ≤ dense_conv.MAX_LENGTH."""
    return u.device.type == "cpu" and u.shape[-1] <= dense_conv.MAX_LENGTH


def causal_conv(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """y[..., t] = Σ_{s ≤ t} k[..., t − s]·u[..., s] for u (B, H, L) and k (H, L)."""
    if runs_as_toeplitz(u):
        return toeplitz_conv.toeplitz_conv(u, k)
    return dense_conv.dense_conv(u, k) if runs_dense(u) else fft_conv(u, k)
