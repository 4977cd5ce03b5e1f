"""Causal convolution y = k * u + D·u by FFT, with a hand-written backward.

For u (B, H, L), k (H, L), D (H) and an FFT length n ≥ 2L (zero padding makes the circular convolution linear):
    y        = irfft(U·K̂)[:L] + D·u,              U = rfft(u, n), K̂ = rfft(k, n)
    ∂/∂u     = irfft(G·conj(K̂))[:L] + D·g,        G = rfft(g, n)   (correlation with k)
    ∂/∂k     = irfft(Σ_b G·conj(U))[:L]                            (correlation of g with u, summed over the batch)
    ∂/∂D     = Σ_{b,l} g·u
Autograd through rfft/irfft/slicing gives the same numbers but spends several extra passes over (B, H, n) tensors
(zero-filled gradients of the padding and slicing, a full-length complex FFT for rfft's backward, a doubling mask
for irfft's); this keeps the spectra of the forward pass and does three FFTs of the batch in the backward.
"""
from __future__ import annotations

import torch


def fft_length(length: int) -> int:
    """The smallest power of 2 ≥ 2·length: zero padding to it makes the FFT's circular convolution linear."""
    return 1 << (2 * length - 1).bit_length()


class _FFTConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u: torch.Tensor, k: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        length = u.shape[-1]
        n = fft_length(length)
        spectrum_u, spectrum_k = torch.fft.rfft(u, n=n), torch.fft.rfft(k, n=n)
        y = torch.fft.irfft(spectrum_u * spectrum_k, n=n)[..., :length]
        ctx.save_for_backward(u, d, spectrum_u, spectrum_k)
        return torch.addcmul(y, d.unsqueeze(-1), u)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        u, d, spectrum_u, spectrum_k = ctx.saved_tensors
        length = g.shape[-1]
        n = fft_length(length)
        spectrum_g = torch.fft.rfft(g, n=n)
        grad_u = grad_k = grad_d = None
        if ctx.needs_input_grad[0]:
            grad_u = torch.addcmul(torch.fft.irfft(spectrum_g * spectrum_k.conj(), n=n)[..., :length],
                                   d.unsqueeze(-1), g)
        if ctx.needs_input_grad[1]:
            grad_k = torch.fft.irfft(torch.linalg.vecdot(spectrum_u, spectrum_g, dim=0), n=n)[..., :length]
        if ctx.needs_input_grad[2]:
            grad_d = (g * u).sum((0, 2))
        return grad_u, grad_k, grad_d


def fft_conv(u: torch.Tensor, k: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """y = k * u + D·u (causal, along the last axis) for u (B, H, L), k (H, L), d (H)."""
    return _FFTConv.apply(u, k, d)
