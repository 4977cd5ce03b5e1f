"""The S4D convolution kernel as one Triton pass each way, for log Ā = p + i·q and weights w = C·B̄ (each (H, N/2)):
    K[h, l] = 2 Σₙ e^{l·pₙ}·(Re wₙ·cos(l·qₙ) − Im wₙ·sin(l·qₙ))
and, with g = ∂loss/∂K and eₙ(l) = e^{l·pₙ},
    ∂/∂Re wₙ = 2 Σ_l g_l·eₙ(l)·cos(l·qₙ),                  ∂/∂Im wₙ = −2 Σ_l g_l·eₙ(l)·sin(l·qₙ)
    ∂/∂pₙ   = 2 Σ_l g_l·l·eₙ(l)·(Re wₙ·cos − Im wₙ·sin),    ∂/∂qₙ   = −2 Σ_l g_l·l·eₙ(l)·(Re wₙ·sin + Im wₙ·cos).
The (H, N/2, L) powers are formed in registers and never stored: the forward pass sums them over the modes, the
backward pass over the steps (one program per channel and block of modes, so the sums run in a fixed order). It
computes what s4d.py's real-arithmetic expression computes, in another order of summation; s4d.py runs it on CUDA
devices in float32. Runs under the Triton interpreter on CPUs (TRITON_INTERPRET=1), for tests.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

STEPS = 128  # steps per block
MODES = 8  # modes per block


@triton.jit
def _modes(p_ptr, q_ptr, re_ptr, im_ptr, h, modes, N):
    """p, q, Re w, Im w (MODES,) of the modes `modes` of channel h; zero past N, so those modes contribute zero."""
    inside, at = modes < N, h * N + modes
    return (tl.load(p_ptr + at, mask=inside, other=0.0), tl.load(q_ptr + at, mask=inside, other=0.0),
            tl.load(re_ptr + at, mask=inside, other=0.0), tl.load(im_ptr + at, mask=inside, other=0.0))


@triton.jit
def _powers(p, q, steps):
    """e^{l·p}·cos(l·q), e^{l·p}·sin(l·q) of shape (MODES, STEPS) for the steps l in `steps` (float32, (1, STEPS))."""
    decay = tl.exp(p[:, None] * steps)
    angle = q[:, None] * steps
    return decay * tl.cos(angle), decay * tl.sin(angle)


@triton.jit
def _forward(p_ptr, q_ptr, re_ptr, im_ptr, k_ptr, N, L, MODES: tl.constexpr, STEPS: tl.constexpr):
    """K for one channel and block of steps. Grid: (H, step blocks)."""
    h = tl.program_id(0)
    steps = tl.program_id(1) * STEPS + tl.arange(0, STEPS)
    acc = tl.zeros((STEPS,), dtype=tl.float32)
    for first in range(0, N, MODES):
        p, q, w_re, w_im = _modes(p_ptr, q_ptr, re_ptr, im_ptr, h, first + tl.arange(0, MODES), N)
        cos, sin = _powers(p, q, steps.to(tl.float32)[None, :])
        acc += tl.sum(w_re[:, None] * cos - w_im[:, None] * sin, axis=0)
    tl.store(k_ptr + h * L + steps, 2 * acc, mask=steps < L)


@triton.jit
def _backward(p_ptr, q_ptr, re_ptr, im_ptr, g_ptr, dp_ptr, dq_ptr, dre_ptr, dim_ptr, N, L, MODES: tl.constexpr,
              STEPS: tl.constexpr):
    """The four gradients for one channel and block of modes, summed over all steps. Grid: (H, mode blocks)."""
    h = tl.program_id(0)
    modes = tl.program_id(1) * MODES + tl.arange(0, MODES)
    p, q, w_re, w_im = _modes(p_ptr, q_ptr, re_ptr, im_ptr, h, modes, N)
    d_p = tl.zeros((MODES,), dtype=tl.float32)
    d_q = tl.zeros((MODES,), dtype=tl.float32)
    d_re = tl.zeros((MODES,), dtype=tl.float32)
    d_im = tl.zeros((MODES,), dtype=tl.float32)
    for first in range(0, L, STEPS):
        steps = first + tl.arange(0, STEPS)
        g = 2 * tl.load(g_ptr + h * L + steps, mask=steps < L, other=0.0)[None, :]
        at = steps.to(tl.float32)[None, :]
        cos, sin = _powers(p, q, at)
        cos, sin = g * cos, g * sin
        d_re += tl.sum(cos, axis=1)
        d_im -= tl.sum(sin, axis=1)
        d_p += tl.sum(at * (w_re[:, None] * cos - w_im[:, None] * sin), axis=1)
        d_q -= tl.sum(at * (w_re[:, None] * sin + w_im[:, None] * cos), axis=1)
    offsets, inside = h * N + modes, modes < N
    tl.store(dp_ptr + offsets, d_p, mask=inside)
    tl.store(dq_ptr + offsets, d_q, mask=inside)
    tl.store(dre_ptr + offsets, d_re, mask=inside)
    tl.store(dim_ptr + offsets, d_im, mask=inside)


@torch.library.custom_op("qs4d::vandermonde", mutates_args=())
def _kernel(p: torch.Tensor, q: torch.Tensor, w_re: torch.Tensor, w_im: torch.Tensor, length: int) -> torch.Tensor:
    channels, modes = p.shape
    k = p.new_empty(channels, length)
    _forward[(channels, triton.cdiv(length, STEPS))](p, q, w_re, w_im, k, modes, length, MODES=MODES, STEPS=STEPS)
    return k


@_kernel.register_fake
def _(p, q, w_re, w_im, length):
    return p.new_empty(p.shape[0], length)


@torch.library.custom_op("qs4d::vandermonde_backward", mutates_args=())
def _kernel_backward(p: torch.Tensor, q: torch.Tensor, w_re: torch.Tensor, w_im: torch.Tensor,
                     g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(∂p, ∂q, ∂Re w, ∂Im w)."""
    channels, modes = p.shape
    grads = [torch.empty_like(p) for _ in range(4)]
    _backward[(channels, triton.cdiv(modes, MODES))](p, q, w_re, w_im, g, *grads, modes, g.shape[-1], MODES=MODES,
                                                    STEPS=STEPS)
    return tuple(grads)


@_kernel_backward.register_fake
def _(p, q, w_re, w_im, g):
    return tuple(torch.empty_like(p) for _ in range(4))


def _setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:4])


def _backward_pass(ctx, g):
    return (*_kernel_backward(*ctx.saved_tensors, g.contiguous()), None)


_kernel.register_autograd(_backward_pass, setup_context=_setup)


def vandermonde(p: torch.Tensor, q: torch.Tensor, w_re: torch.Tensor, w_im: torch.Tensor, length: int) -> torch.Tensor:
    """K[h, l] = 2 Σₙ e^{l·pₙ}·(Re wₙ·cos(l·qₙ) − Im wₙ·sin(l·qₙ)) for p, q, Re w, Im w of shape (H, N/2), float32."""
    return _kernel(*(x.contiguous() for x in (p, q, w_re, w_im)), length)
