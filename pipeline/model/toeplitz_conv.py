"""Causal convolution y = k * u along the last axis as blocked Toeplitz matrix products on tensor cores (Triton).

For u (B, H, L) and k (H, L), channel h's output is a product with a lower-triangular Toeplitz matrix,
    y[b, h, t] = Σ_{s ≤ t} k[h, t − s]·u[b, h, s],
computed in blocks of T steps: each program holds one block of outputs for a block of the batch and adds, for every
block of inputs at or before it, (batch × T inputs) @ (T × T taps); the tap tiles, one per distance between blocks
(H·L·T values), are laid out once per call. The backward pass is two more such products, with g = ∂loss/∂y:
    ∂/∂u[b, h, s] = Σ_{t ≥ s} k[h, t − s]·g[b, h, t]          (the same kernel, anti-causal)
    ∂/∂k[h, j]    = Σ_b Σ_t g[b, h, t]·u[b, h, t − j]          (lag sums)
For the lag sums, the program of lag block d and output block t₀ forms
    P[τ, σ] = Σ_b g[b, h, t₀ + τ]·u[b, h, t₀ − dT + σ]     (a T × T tile whose entry has lag dT + τ − σ)
and sums it along its diagonals; the partial sums are added over t₀ in a fixed order, so the result is deterministic.
The lag sums read u and g laid out (H, L, B), batch contiguous; the forward and input-gradient products, which read
every block of u and g anyway, write them in that layout as well, in place of a transposing copy of each.

The work is L²/2 multiply-adds per row, against the FFT convolution's O(L log L), but it runs as matrix products on
tensor cores and moves each (B, H, L) tensor through memory about once, where the FFT convolution writes and reads
padded complex spectra several times. Tensor cores multiply float32 at TF32 precision (a 10-bit mantissa), so the
convolution runs this way only where the user allows TF32 matrix products (`torch.set_float32_matmul_precision`
"high" or "medium", `train.matmul_precision: high`), on a CUDA device, in float32, for L ≤ `MAX_LENGTH`; causal_conv.py
picks it or the FFT convolution. Runs under the Triton interpreter on CPUs (TRITON_INTERPRET=1),
for tests.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

STEPS = 32  # steps per block of the convolution (its taps come in STEPS × STEPS tiles)
ROWS = 64  # sequences per block of the batch
LAG_STEPS, LAG_ROWS = 64, 32  # the lag sums' blocks of steps and of the batch (the fastest measured on an H100)
# Longest sequence convolved this way. Its cost grows as L², the FFT's with the padded length (2048 for L from 513
# to 1024, 4096 above). On an H100 at batch 64, H 128 (benchmarks/conv_speed.py), forward + backward took 1.00
# against 1.09 ms at L = 784 and 1.05 against 1.08 ms at L = 1024, the forward alone 2.7× less at both.
MAX_LENGTH = 1024


@torch.compiler.assume_constant_result
def tf32_allowed() -> bool:
    """TF32 matrix products allowed (`torch.set_float32_matmul_precision` not "highest"); a constant to the compiler."""
    return torch.get_float32_matmul_precision() != "highest"


@triton.jit
def _tap_tiles(k_ptr, tile_ptr, L, REVERSE: tl.constexpr, STEPS: tl.constexpr):
    """tile[h, d, o, i] = k[h, dT + o − i] (REVERSE: k[h, dT + i − o]) where the lag lies in [0, L), else 0: the
    taps from input step i to output step o of a block pair d blocks apart, i contiguous. Grid: (H, blocks)."""
    h, d = tl.program_id(0), tl.program_id(1)
    steps = tl.arange(0, STEPS)
    lag = steps[:, None] - steps[None, :]
    if REVERSE:
        lag = -lag
    lag += d * STEPS
    taps = tl.load(k_ptr + h * L + lag, mask=(lag >= 0) & (lag < L), other=0.0)
    tl.store(tile_ptr + (h * tl.num_programs(1) + d) * STEPS * STEPS + steps[:, None] * STEPS + steps[None, :], taps)


@triton.jit
def _toeplitz(x_ptr, tile_ptr, y_ptr, xt_ptr, B, H, L, REVERSE: tl.constexpr, TRANSPOSE: tl.constexpr,
              PRECISION: tl.constexpr, ROWS: tl.constexpr, STEPS: tl.constexpr):
    """y[b, h, o] = Σ_{i ≤ o} k[h, o − i]·x[b, h, i]; REVERSE: Σ_{i ≥ o} k[h, i − o]·x[b, h, i]; the taps as
    `_tap_tiles` lays them out (read as (i, o) tiles with i contiguous, the layout tensor cores take). TRANSPOSE:
    also xt[h, o, b] = x[b, h, o] over the program's block, so that the grid writes all of xt, (H, L, B).
    Grid: (H, output blocks, batch blocks)."""
    h, out_block, row_block = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    blocks = tl.cdiv(L, STEPS)
    rows = row_block * ROWS + tl.arange(0, ROWS)
    steps = tl.arange(0, STEPS)
    outs = out_block * STEPS + steps
    row_ptr = x_ptr + rows[:, None] * (H * L) + h * L
    tiles = tile_ptr + h * blocks * STEPS * STEPS + steps[None, :] * STEPS + steps[:, None]
    if REVERSE:
        first, last = out_block, blocks
    else:
        first, last = 0, out_block + 1
    acc = tl.zeros((ROWS, STEPS), dtype=tl.float32)
    for in_block in range(first, last):
        ins = in_block * STEPS + steps
        x = tl.load(row_ptr + ins[None, :], mask=(rows[:, None] < B) & (ins[None, :] < L), other=0.0)
        apart = in_block - out_block if REVERSE else out_block - in_block
        acc += tl.dot(x, tl.load(tiles + apart * STEPS * STEPS), input_precision=PRECISION)
    inside = (rows[:, None] < B) & (outs[None, :] < L)
    tl.store(y_ptr + rows[:, None] * (H * L) + h * L + outs[None, :], acc, mask=inside)
    if TRANSPOSE:
        x = tl.load(row_ptr + outs[None, :], mask=inside, other=0.0)
        tl.store(xt_ptr + h * L * B + outs[None, :] * B + rows[:, None], x, mask=inside)


@triton.jit
def _lag_sums(g_ptr, x_ptr, part_ptr, B, L, PRECISION: tl.constexpr, ROWS: tl.constexpr, STEPS: tl.constexpr):
    """For g and x laid out (H, L, B) (batch contiguous): P[τ, σ] = Σ_b g[h, t₀ + τ, b]·x[h, t₀ − dT + σ, b] for
    output block t₀ and lag block d (entry lag dT + τ − σ), summed along its diagonals:
    part[h, d, t₀, 0, j] = Σ_τ P[τ, τ − j] (lag dT + j), part[h, d, t₀, 1, j] = Σ_τ P[τ, τ − j + T] (lag
    dT + j − T). Grid: (H, lag blocks, output blocks); programs with t₀ < d write nothing."""
    h, lag_block, out_block = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    blocks = tl.num_programs(1)
    if out_block >= lag_block:
        steps = tl.arange(0, STEPS)
        outs = out_block * STEPS + steps
        ins = (out_block - lag_block) * STEPS + steps
        acc = tl.zeros((STEPS, STEPS), dtype=tl.float32)
        for row in range(0, B, ROWS):
            rows = row + tl.arange(0, ROWS)
            g = tl.load(g_ptr + h * L * B + outs[:, None] * B + rows[None, :],
                        mask=(outs[:, None] < L) & (rows[None, :] < B), other=0.0)
            x = tl.load(x_ptr + h * L * B + ins[None, :] * B + rows[:, None],
                        mask=(ins[None, :] < L) & (rows[:, None] < B), other=0.0)
            acc += tl.dot(g, x, input_precision=PRECISION)
        column = steps[:, None] - steps[None, :]  # (τ, j) → σ = τ − j, or τ − j + T for the negative lags
        picked = tl.gather(acc, tl.where(column >= 0, column, column + STEPS), axis=1)
        part = part_ptr + ((h * blocks + lag_block) * blocks + out_block) * 2 * STEPS
        tl.store(part + steps, tl.sum(tl.where(column >= 0, picked, 0.0), axis=0))
        tl.store(part + STEPS + steps, tl.sum(tl.where(column < 0, picked, 0.0), axis=0))


@torch.library.custom_op("qs4d::toeplitz_conv", mutates_args=())
def _conv(u: torch.Tensor, k: torch.Tensor, reverse: bool, precision: str,
          transpose: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, u laid out (H, L, B) if `transpose`, else an empty tensor)."""
    batch, channels, length = u.shape
    blocks = triton.cdiv(length, STEPS)
    tiles = k.new_empty(channels, blocks, STEPS, STEPS)
    _tap_tiles[(channels, blocks)](k, tiles, length, REVERSE=reverse, STEPS=STEPS)
    y = torch.empty_like(u)
    if transpose:
        transposed = target = u.new_empty(channels, length, batch)
    else:  # the kernel writes no copy: any valid pointer will do
        transposed, target = u.new_empty(0), y
    _toeplitz[(channels, blocks, triton.cdiv(batch, ROWS))](u, tiles, y, target, batch, channels, length,
                                                           REVERSE=reverse, TRANSPOSE=transpose, PRECISION=precision,
                                                           ROWS=ROWS, STEPS=STEPS, num_warps=4)
    return y, transposed


@_conv.register_fake
def _(u, k, reverse, precision, transpose):
    batch, channels, length = u.shape
    return torch.empty_like(u), u.new_empty((channels, length, batch) if transpose else (0,))


@torch.library.custom_op("qs4d::toeplitz_lag_sums", mutates_args=())
def _lags(g: torch.Tensor, u: torch.Tensor, precision: str) -> torch.Tensor:
    """∂/∂k[h, j] = Σ_b Σ_t g[h, t, b]·u[h, t − j, b] of g and u laid out (H, L, B), shape (H, L)."""
    channels, length, batch = u.shape
    blocks = triton.cdiv(length, LAG_STEPS)
    part = u.new_zeros(channels, blocks, blocks, 2, LAG_STEPS)
    _lag_sums[(channels, blocks, blocks)](g, u, part, batch, length, PRECISION=precision, ROWS=LAG_ROWS,
                                          STEPS=LAG_STEPS, num_warps=4)
    sums = part.sum(2)  # (H, lag blocks, lower | upper, T)
    grad = sums[:, :, 0].clone()
    grad[:, :-1] += sums[:, 1:, 1]  # lag block d + 1's upper sums are block d's lags
    return grad.flatten(1)[:, :length].contiguous()


@_lags.register_fake
def _(g, u, precision):
    return u.new_empty(u.shape[:2])


def _transposed(x: torch.Tensor) -> torch.Tensor:
    """x (B, H, L) laid out (H, L, B)."""
    return x.permute(1, 2, 0).contiguous()


def _setup(ctx, inputs, output):
    u, k, reverse, precision, transpose = inputs
    ctx.save_for_backward(output[1] if transpose else u, k)
    ctx.reverse, ctx.precision, ctx.transposed = reverse, precision, transpose
    ctx.mark_non_differentiable(output[1])  # u's copy for the backward pass, not a result
    ctx.set_materialize_grads(False)  # no zeros for the copy's gradient (a whole (H, L, B) tensor)


def _backward(ctx, g, _):
    saved, k = ctx.saved_tensors
    need_u, need_k = ctx.needs_input_grad[:2]
    if g is None:  # y not used
        return None, None, None, None, None
    g = g.contiguous()
    grad_u = grad_k = None
    if need_u:
        grad_u, g_t = _conv(g, k, not ctx.reverse, ctx.precision, need_k)
    elif need_k:
        g_t = _transposed(g)
    if need_k:
        u_t = saved if ctx.transposed else _transposed(saved)
        grad_k = _lags(u_t, g_t, ctx.precision) if ctx.reverse else _lags(g_t, u_t, ctx.precision)
    return grad_u, grad_k, None, None, None


_conv.register_autograd(_backward, setup_context=_setup)


def toeplitz_conv(u: torch.Tensor, k: torch.Tensor, precision: str = "tf32") -> torch.Tensor:
    """y[..., t] = Σ_{s ≤ t} k[..., t − s]·u[..., s] for u (B, H, L) and k (H, L), float32; tensor-core products at
    `precision` (Triton's: "tf32", or "ieee" for float32 arithmetic)."""
    return _conv(u.contiguous(), k.contiguous(), False, precision, k.requires_grad and torch.is_grad_enabled())[0]
