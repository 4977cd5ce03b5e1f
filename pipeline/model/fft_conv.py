"""Causal convolution y = k * u along the last axis by FFT, with a hand-written backward.

For u (B, H, L), k (H, L) and an FFT length n ≥ 2L (zero padding makes the circular convolution linear):
    y        = irfft(U·K̂)[:L],                    U = rfft(u, n), K̂ = rfft(k, n)
    ∂/∂u     = irfft(G·conj(K̂))[:L],              G = rfft(g, n)   (correlation with k)
    ∂/∂k     = irfft(Σ_b G·conj(U))[:L]                            (correlation of g with u, summed over the batch)
Autograd through rfft/irfft/slicing gives the same numbers but spends several extra passes over (B, H, n) tensors
(zero-filled gradients of the padding and slicing, a full-length complex FFT for rfft's backward, a doubling mask
for irfft's); this keeps the spectra of the forward pass and does two FFTs of the batch in the backward. Outputs
are views of the length-n results (the first L steps), which saves a copy. The inverse transform's 1/n goes into
the products (eagerly into the small K̂ and Σ_b G·conj U) instead of a pass over each (B, H, n) result; for n a
power of 2 the scaling is exact, so the numbers are those of irfft's own normalisation. Under torch.compile the
spectral products are written in real arithmetic (inductor generates no code for complex tensors, and would run
each complex op, conjugation and batch sum on its own): the product and the batch-summed correlation are then one
fused kernel each.

On a GPU, cuFFT's inverse real transform overwrites its input, so torch copies every (B, H, n) spectrum before it.
There, a batch of even size B runs as B/2 complex signals instead (`PAIRED_DEVICES`): z = u[:B/2] + i·u[B/2:],
and for a real kernel k everything above stays real-linear:
    y[:B/2] + i·y[B/2:]   = ifft(Z·K̂)[:L]                       (Z = fft(z, n), K̂ = fft(k, n), full length)
    ∂/∂u, paired the same = ifft(G·conj(K̂))[:L]
    ∂/∂k                  = Re ifft(Σ_j conj(Z_j)·G_j)[:L]
the last because conj(Z)·G = Σ₁ + i·Σ₂ with Σ₁ = conj(U₁)G₁ + conj(U₂)G₂ and Σ₂ = conj(U₁)G₂ − conj(U₂)G₁ both
spectra of real sequences. Complex transforms keep their input, so no copy is made, and the transforms move as
many bytes as the real ones.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F


def fft_length(length: int) -> int:
    """The smallest power of 2 ≥ 2·length: zero padding to it makes the FFT's circular convolution linear."""
    return 1 << (2 * length - 1).bit_length()


def _spectrum(x: torch.Tensor, n: int) -> torch.Tensor:
    return torch.fft.rfft(F.pad(x, (0, n - x.shape[-1])))


def _inverse(spectrum: torch.Tensor, n: int, length: int) -> torch.Tensor:
    """The first `length` steps of the inverse transform without its 1/n (the caller has applied it)."""
    return torch.fft.irfft(spectrum, n=n, norm="forward")[..., :length]


def _product(a: torch.Tensor, b: torch.Tensor, scale: float, conjugate: bool = False) -> torch.Tensor:
    """a·b·scale, or a·conj(b)·scale with `conjugate`, for a (…, H, F) and a smaller b (H, F)."""
    if not torch.compiler.is_compiling():
        return a * ((b.conj() if conjugate else b) * scale)
    (a_re, a_im), (b_re, b_im) = torch.view_as_real(a).unbind(-1), torch.view_as_real(b).unbind(-1)
    if conjugate:
        b_im = -b_im
    parts = ((a_re * b_re - a_im * b_im) * scale, (a_re * b_im + a_im * b_re) * scale)
    return torch.view_as_complex(torch.stack(parts, -1))


def _correlation(a: torch.Tensor, b: torch.Tensor, scale: float) -> torch.Tensor:
    """Σ over the first axis of conj(a)·b, times scale."""
    if not torch.compiler.is_compiling():
        return torch.linalg.vecdot(a, b, dim=0) * scale
    (a_re, a_im), (b_re, b_im) = torch.view_as_real(a).unbind(-1), torch.view_as_real(b).unbind(-1)
    parts = ((a_re * b_re + a_im * b_im).sum(0) * scale, (a_re * b_im - a_im * b_re).sum(0) * scale)
    return torch.view_as_complex(torch.stack(parts, -1))


def _paired_spectrum(x: torch.Tensor, n: int) -> torch.Tensor:
    """fft(x[:B/2] + i·x[B/2:], n) for x (B, H, L), the pairs built in real arithmetic (a (re, im) last axis)."""
    half = x.shape[0] // 2
    pairs = torch.stack((x[:half], x[half:]), dim=-1)
    return torch.fft.fft(torch.view_as_complex(F.pad(pairs, (0, 0, 0, n - x.shape[-1]))))


def _full_spectrum(k: torch.Tensor, n: int) -> torch.Tensor:
    return torch.fft.fft(F.pad(k, (0, n - k.shape[-1])))


def _unpaired(spectrum: torch.Tensor, n: int, length: int) -> torch.Tensor:
    """(B, H, length) from the first `length` steps of the inverse transform (without its 1/n): real parts, then
    imaginary parts."""
    pairs = torch.view_as_real(torch.fft.ifft(spectrum, n=n, norm="forward"))[..., :length, :]
    return torch.cat((pairs[..., 0], pairs[..., 1]))


def _real_part(spectrum: torch.Tensor, n: int, length: int) -> torch.Tensor:
    """Re of the first `length` steps of the inverse transform (without its 1/n)."""
    return torch.fft.ifft(spectrum, n=n, norm="forward").real[..., :length]


class _Transforms(NamedTuple):
    """(signal's spectrum, kernel's spectrum, signal's inverse, kernel gradient's inverse) of one form."""
    signal: Callable[[torch.Tensor, int], torch.Tensor]
    kernel: Callable[[torch.Tensor, int], torch.Tensor]
    signal_inverse: Callable[[torch.Tensor, int, int], torch.Tensor]
    kernel_inverse: Callable[[torch.Tensor, int, int], torch.Tensor]


REAL = _Transforms(_spectrum, _spectrum, _inverse, _inverse)
PAIRED = _Transforms(_paired_spectrum, _full_spectrum, _unpaired, _real_part)


def _forward(ctx, u: torch.Tensor, k: torch.Tensor, transforms: _Transforms) -> torch.Tensor:
    length = u.shape[-1]
    n = fft_length(length)
    spectrum_u, spectrum_k = transforms.signal(u, n), transforms.kernel(k, n)
    ctx.save_for_backward(spectrum_u, spectrum_k)
    ctx.n = n
    return transforms.signal_inverse(_product(spectrum_u, spectrum_k, 1 / n), n, length)


def _backward(ctx, g: torch.Tensor, transforms: _Transforms) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    spectrum_u, spectrum_k = ctx.saved_tensors
    length, n = g.shape[-1], ctx.n
    spectrum_g = transforms.signal(g, n)
    grad_u = grad_k = None
    if ctx.needs_input_grad[0]:
        grad_u = transforms.signal_inverse(_product(spectrum_g, spectrum_k, 1 / n, conjugate=True), n, length)
    if ctx.needs_input_grad[1]:
        grad_k = transforms.kernel_inverse(_correlation(spectrum_u, spectrum_g, 1 / n), n, length)
    return grad_u, grad_k


class _FFTConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return _forward(ctx, u, k, REAL)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        return _backward(ctx, g, REAL)


class _PairedFFTConv(torch.autograd.Function):
    """The same map for an even batch, half of it in the real and half in the imaginary parts (module docstring)."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return _forward(ctx, u, k, PAIRED)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        return _backward(ctx, g, PAIRED)


PAIRED_DEVICES = ("cuda",)  # device types whose even batches run paired (their inverse real FFT copies its input)


def fft_conv(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """y[..., t] = Σ_{s ≤ t} k[..., t − s]·u[..., s] for u (B, H, L) and k (H, L)."""
    if u.device.type in PAIRED_DEVICES and u.shape[0] % 2 == 0:
        return _PairedFFTConv.apply(u, k)
    return _FFTConv.apply(u, k)
