"""The whole tile recurrence of one layer in one GPU kernel (Triton): `tile_read.tile_step` for all L + 1 steps
with the state in registers.

One program holds one tile (its live slots) of one chip's channel for a block of sequences and steps through time;
each step reads u_t from global memory and writes the tile's y_{t−1}; the tiles of a channel are added after. Each
tile index runs as wide as its fullest tile (a power of 2), and tile indices of one width share a launch: a channel of
32 modes on 64×64 tiles fills tiles of 15, 15 and 2 modes, which run as one launch 16 slots wide and one 2 wide.
The arithmetic is `tile_step`'s: DAC, the three weights into each state column and the two into y, read noise
std·√(Σ v²·cells) per column, ADC (rounding half to even, like torch.round), with converters that multiply by
precomputed gains, as the loop's do (`converters.Converter`). Read noise: each column's normals come from its own
XORWOW stream (Marsaglia, "Xorshift RNGs", J. Stat. Softw. 2003; cuRAND's default generator), seeded by Philox and
kept in registers, through Box–Muller on 24-bit uniforms with the GPU's approximate log, sin and cos; it has the
eager loop's distribution, not its draws. Runs under the Triton interpreter on CPUs (TRITON_INTERPRET=1), for tests.
For training (hardware in the loop) the forward pass keeps each step's state and where each ADC stayed inside its
full scale, and `_scan_grad` runs back-propagation through time on the same grid, from the last step to the first:
converters straight-through where they did not clip, the weights' gradients summed in registers over time.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

from pipeline.analog.converters import converter_levels
from pipeline.analog.mapping import FIXED_ROWS, live_widths

APPROXIMATE = tl.constexpr(os.environ.get("TRITON_INTERPRET", "0") != "1")  # the interpreter has no libdevice

SLOT_FIELDS = 22  # per slot: 8 weights, 8 noise variances, DAC gains, ADC gains and steps (re, im); see `pack`
WEIGHT_FIELDS = 16  # the weights and noise variances: all zero in an empty slot
TILE_FIELDS = 6  # per tile: DAC gains of u_t and u_{t−1}, skip weight, its noise variance, y's ADC gain and step


@triton.jit
def _rint(x):
    """Round half to even: adding and taking away 1.5·2^(mantissa bits) leaves the nearest integer (|x| < 2^22)."""
    if x.dtype == tl.float64:
        big = 6755399441055744.0
    else:
        big = 12582912.0
    return (x + big) - big


@triton.jit
def _convert(x, gain, step, LEVELS: tl.constexpr):
    """A converter: round(clamp(x·gain, ±LEVELS))·step with LEVELS = 2^(bits−1) − 1; x·gain when ideal (LEVELS 0)."""
    q = x * gain
    if LEVELS > 0:
        q = _rint(tl.minimum(tl.maximum(q, -LEVELS), LEVELS)) * step
    return q


@triton.jit
def _xorwow(x, y, z, w, v, d):
    """One XORWOW output (uint32): the xorshift of five words plus a Weyl sequence of step 362437."""
    t = x ^ (x >> 2)
    v_new = (v ^ (v << 4)) ^ (t ^ (t << 1))
    d += 362437
    return y, z, w, v, v_new, d, v_new + d


@triton.jit
def _uniform(k):
    """(0, 1) from the top 24 bits of k: (k·2^−8 + 1/2)·2^−24."""
    return ((k >> 8).to(tl.float32) + 0.5) * 5.9604644775390625e-08


@triton.jit
def _normals(x, y, z, w, v, d):
    """Two standard normals from two XORWOW outputs (Box–Muller: √(−2 ln u₁)·(cos, sin)(2π(u₂ − ½))); returns
    the new state and the pair. Compiled, log, sin and cos are the GPU's approximate ones (absolute error about
    2⁻²¹ on the angle's range (−π, π), far below the noise's own scale)."""
    x, y, z, w, v, d, k1 = _xorwow(x, y, z, w, v, d)
    x, y, z, w, v, d, k2 = _xorwow(x, y, z, w, v, d)
    angle = 6.283185307179586 * (_uniform(k2) - 0.5)
    if APPROXIMATE:
        r = tl.sqrt(-2.0 * libdevice.fast_logf(_uniform(k1)))
        return x, y, z, w, v, d, r * libdevice.fast_cosf(angle), r * libdevice.fast_sinf(angle)
    r = tl.sqrt(-2.0 * tl.log(_uniform(k1)))
    return x, y, z, w, v, d, r * tl.cos(angle), r * tl.sin(angle)


@triton.jit
def _seeded(seed, stream):
    """An XORWOW state per element of `stream` (distinct int64 ids), from Philox: (x, y, z, w, v, d)."""
    x, y, z, w = tl.randint4x(seed, 2 * stream)
    v, d, _, _ = tl.randint4x(seed, 2 * stream + 1)
    return x, y, z, w, v, d


@triton.jit
def _step(u_t, u_prev, x_re, x_im, n_re, n_im, n_y,
          w_in_re, w_in_im, w_rr, w_ri, w_ir, w_ii, w_out_re, w_out_im,
          var_re_in, var_re_re, var_re_im, var_im_in, var_im_re, var_im_im, var_y_re, var_y_im, var_skip,
          dac_re, dac_im, adc_re, adc_im, step_re, step_im, dac_u, dac_prev, skip, adc_y, step_y,
          DAC: tl.constexpr, ADC: tl.constexpr, NOISE: tl.constexpr, RESIDUAL: tl.constexpr):
    """One read of a tile: `tile_read.tile_step` on [sequences, slots] blocks; returns (x_re, x_im, y) and the
    column currents before the ADCs (x_re, x_im, y)."""
    unit = tl.full([], 1.0, u_t.dtype) / (DAC + (DAC == 0))  # the DACs' step (inputs in [−1, 1]) in u's precision
    v_u = _convert(u_t, dac_u, unit, DAC)[:, None]
    v_prev = _convert(u_prev, dac_prev, unit, DAC)
    v_re = _convert(x_re, dac_re, unit, DAC)
    v_im = _convert(x_im, dac_im, unit, DAC)
    out_re = v_u * w_in_re + v_re * w_rr + v_im * w_ir
    out_im = v_u * w_in_im + v_re * w_ri + v_im * w_ii
    out_y = tl.sum(v_re * w_out_re + v_im * w_out_im, axis=1) + v_prev * skip
    if NOISE:  # std of a column current: √(Σ_rows v²·cells·std²), the variances packed per weight
        out_re += n_re.to(out_re.dtype) * tl.sqrt(v_u * v_u * var_re_in + v_re * v_re * var_re_re
                                                  + v_im * v_im * var_re_im)
        out_im += n_im.to(out_im.dtype) * tl.sqrt(v_u * v_u * var_im_in + v_re * v_re * var_im_re
                                                  + v_im * v_im * var_im_im)
        var_y = tl.sum(v_re * v_re * var_y_re + v_im * v_im * var_y_im, axis=1) + v_prev * v_prev * var_skip
        out_y += n_y.to(out_y.dtype) * tl.sqrt(var_y)
    new_re, new_im = _convert(out_re, adc_re, step_re, ADC), _convert(out_im, adc_im, step_im, ADC)
    if RESIDUAL:
        new_re, new_im = new_re + x_re, new_im + x_im
    return new_re, new_im, _convert(out_y, adc_y, step_y, ADC), out_re, out_im, out_y


@triton.jit
def _code(x, gain, LEVELS: tl.constexpr):
    """A DAC's code of x, clipped one step past the full scale so that it still tells where the DAC clipped."""
    return _rint(tl.minimum(tl.maximum(x * gain, -LEVELS - 1), LEVELS + 1)).to(tl.int32)


@triton.jit
def _inside(x, gain, LEVELS: tl.constexpr):
    """1 where a converter passes gradient (|round(x·gain)| ≤ LEVELS: inside its full scale), else 0."""
    if LEVELS > 0:
        return (tl.abs(_rint(x * gain)) <= LEVELS).to(x.dtype)
    return x * 0 + 1


@triton.jit
def _save(x_at, inside_at, inside_y_at, x_re, x_im, out_re, out_im, out_y, dac_re, dac_im, adc_re, adc_im, adc_y,
          live2, live, DAC: tl.constexpr, ADC: tl.constexpr):
    """Keep what the backward pass needs of one step: the new state as the DAC will read it (its code, clipped one
    past the full scale: int16 up to 15 bits; the state itself if the DAC is ideal) and where each ADC passed
    gradient."""
    if DAC > 0:
        tl.store(x_at, _code(x_re, dac_re, DAC), mask=live2)
        tl.store(x_at + 1, _code(x_im, dac_im, DAC), mask=live2)
    else:
        tl.store(x_at, x_re, mask=live2)
        tl.store(x_at + 1, x_im, mask=live2)
    inside = _inside(out_re, adc_re, ADC) * _inside(out_im, adc_im, ADC)  # a mode's parts pass together
    tl.store(inside_at, inside.to(tl.int8), mask=live2)
    tl.store(inside_y_at, _inside(out_y, adc_y, ADC).to(tl.int8), mask=live)


@triton.jit(do_not_specialize=["seed"])  # a fresh seed per call: never a new compilation
def _scan(u_ptr, y_ptr, slot_ptr, tile_ptr, x_ptr, inside_ptr, inside_y_ptr, seed, steps, B, C, H, T, t0, MP,
          SF: tl.constexpr, TF: tl.constexpr, W: tl.constexpr, BB: tl.constexpr,
          DAC: tl.constexpr, ADC: tl.constexpr, NOISE: tl.constexpr, RESIDUAL: tl.constexpr, SAVE: tl.constexpr):
    """Tile indices t0 … t0 + NT − 1 of every channel: u: (steps, H, C, B), steps even, its last steps zeros;
    y: (steps, T, H, C, B) per tile, its first step y_{−1}; slot fields (C, H, T, MP, SF), of which the first W
    slots are run; tile fields (C, H, T, TF). Grid (C·H, ⌈B/BB⌉, NT). Two steps per iteration, so that one
    Box–Muller pair serves both steps' y columns. Every state column (slots, then y) of every sequence has its own
    noise stream, numbered as if all MP slots ran. With SAVE, each step's state goes to x (steps, NT·C·H, B, W, 2;
    as `_save` keeps it) and where its ADCs passed gradient to inside (steps, NT·C·H, B, W; 1 where both of a
    mode's ADCs did) and inside_y (steps, NT·C·H, B), for `_scan_grad`."""
    ch = tl.program_id(0)  # chip·H + channel
    t = t0 + tl.program_id(2)
    row = tl.program_id(2) * C * H + ch  # of the kept tensors
    NT = tl.num_programs(2)
    tile = ch * T + t
    b = tl.program_id(1) * BB + tl.arange(0, BB)
    live = b < B
    j = tl.arange(0, W)
    slots = slot_ptr + (tile * MP + j) * SF
    tiles = tile_ptr + tile * TF
    w_in_re, w_in_im = tl.load(slots + 0)[None], tl.load(slots + 1)[None]
    w_rr, w_ri = tl.load(slots + 2)[None], tl.load(slots + 3)[None]
    w_ir, w_ii = tl.load(slots + 4)[None], tl.load(slots + 5)[None]
    w_out_re, w_out_im = tl.load(slots + 6)[None], tl.load(slots + 7)[None]
    var_re_in, var_re_re, var_re_im = tl.load(slots + 8)[None], tl.load(slots + 9)[None], tl.load(slots + 10)[None]
    var_im_in, var_im_re, var_im_im = tl.load(slots + 11)[None], tl.load(slots + 12)[None], tl.load(slots + 13)[None]
    var_y_re, var_y_im = tl.load(slots + 14)[None], tl.load(slots + 15)[None]
    dac_re, dac_im = tl.load(slots + 16)[None], tl.load(slots + 17)[None]
    adc_re, adc_im = tl.load(slots + 18)[None], tl.load(slots + 19)[None]
    step_re, step_im = tl.load(slots + 20)[None], tl.load(slots + 21)[None]
    dac_u, dac_prev = tl.load(tiles + 0), tl.load(tiles + 1)
    skip, var_skip = tl.load(tiles + 2), tl.load(tiles + 3)
    adc_y, step_y = tl.load(tiles + 4), tl.load(tiles + 5)

    x_re = tl.zeros([BB, W], dtype=u_ptr.dtype.element_ty)
    x_im = tl.zeros([BB, W], dtype=u_ptr.dtype.element_ty)
    u_prev = tl.zeros([BB], dtype=u_ptr.dtype.element_ty)
    where = ((ch % H) * C + ch // H) * B + b  # (h, c, b) in (H, C, B)
    u_at, y_at = u_ptr + where, y_ptr + t * H * C * B + where
    kept = row.to(tl.int64) * B * W + b[:, None] * W + j[None, :]  # (t·c·h, b, slot) in (NT·C·H, B, W)
    x_at, inside_at, inside_y_at = x_ptr + 2 * kept, inside_ptr + kept, inside_y_ptr + row.to(tl.int64) * B + b
    live2 = live[:, None] & (j[None, :] < W)
    if NOISE:
        sx, sy, sz, sw, sv, sd = _seeded(seed, (tile.to(tl.int64) * B + b[:, None]) * MP + j[None, :])
        yx, yy, yz, yw, yv, yd = _seeded(seed, tile.to(tl.int64) * B + b + C * H * T * B * MP)
    for _ in range(0, steps, 2):
        n_re, n_im, n_re_next, n_im_next, n_y, n_y_next = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
        if NOISE:
            sx, sy, sz, sw, sv, sd, n_re, n_im = _normals(sx, sy, sz, sw, sv, sd)
            sx, sy, sz, sw, sv, sd, n_re_next, n_im_next = _normals(sx, sy, sz, sw, sv, sd)
            yx, yy, yz, yw, yv, yd, n_y, n_y_next = _normals(yx, yy, yz, yw, yv, yd)
        u_t = tl.load(u_at, mask=live, other=0.0)
        x_re, x_im, y, out_re, out_im, out_y = _step(
            u_t, u_prev, x_re, x_im, n_re, n_im, n_y, w_in_re, w_in_im, w_rr, w_ri, w_ir, w_ii, w_out_re, w_out_im,
            var_re_in, var_re_re, var_re_im, var_im_in, var_im_re, var_im_im, var_y_re, var_y_im, var_skip, dac_re,
            dac_im, adc_re, adc_im, step_re, step_im, dac_u, dac_prev, skip, adc_y, step_y, DAC, ADC, NOISE, RESIDUAL)
        tl.store(y_at, y, mask=live)
        if SAVE:
            _save(x_at, inside_at, inside_y_at, x_re, x_im, out_re, out_im, out_y, dac_re, dac_im, adc_re, adc_im,
                  adc_y, live2, live, DAC, ADC)
        u_prev = u_t
        u_t = tl.load(u_at + H * C * B, mask=live, other=0.0)
        x_re, x_im, y, out_re, out_im, out_y = _step(
            u_t, u_prev, x_re, x_im, n_re_next, n_im_next, n_y_next, w_in_re, w_in_im, w_rr, w_ri, w_ir, w_ii,
            w_out_re, w_out_im, var_re_in, var_re_re, var_re_im, var_im_in, var_im_re, var_im_im, var_y_re, var_y_im,
            var_skip, dac_re, dac_im, adc_re, adc_im, step_re, step_im, dac_u, dac_prev, skip, adc_y, step_y, DAC, ADC,
            NOISE, RESIDUAL)
        tl.store(y_at + T * H * C * B, y, mask=live)
        if SAVE:
            _save(x_at + 2 * NT * C * H * B * W, inside_at + NT * C * H * B * W, inside_y_at + NT * C * H * B, x_re,
                  x_im, out_re, out_im, out_y, dac_re, dac_im, adc_re, adc_im, adc_y, live2, live, DAC, ADC)
            x_at += 4 * NT * C * H * B * W
            inside_at += 2 * NT * C * H * B * W
            inside_y_at += 2 * NT * C * H * B
        u_prev = u_t
        u_at += 2 * H * C * B
        y_at += 2 * T * H * C * B


@triton.jit
def _scan_grad(u_ptr, gy_ptr, gu_ptr, x_ptr, inside_ptr, inside_y_ptr, gw_ptr, slot_ptr, jac_ptr, tile_ptr, steps,
               B, C, H, T, t0, MP, SF: tl.constexpr, TF: tl.constexpr, W: tl.constexpr, BB: tl.constexpr,
               DAC: tl.constexpr, RESIDUAL: tl.constexpr):
    """Back-propagation through time of `_scan` (SAVE, same grid) from the last step to the first: gy
    (steps, T, H, C, B) the gradient of its y; writes each tile's gradient of the inputs to gu (T, steps, H, C, B)
    and of its weights, summed over the block's sequences, to gw (NT, C·H, ⌈B/BB⌉, 9, W): the 8 slot weights, then
    the skip weight in slot 0. The state's gradient flows back through the block weights of jac (fields as the
    slots'; the slots themselves unless `scan` is given a jacobian). Converters pass gradient straight through
    where the forward pass was inside their full scale (DACs from the kept codes, ADCs as kept); read
    noise carries none."""
    ch = tl.program_id(0)
    t = t0 + tl.program_id(2)
    row = tl.program_id(2) * C * H + ch
    NT = tl.num_programs(2)
    tile = ch * T + t
    b = tl.program_id(1) * BB + tl.arange(0, BB)
    live = b < B
    j = tl.arange(0, W)
    live2 = live[:, None] & (j[None, :] < W)
    slots = slot_ptr + (tile * MP + j) * SF
    tiles = tile_ptr + tile * TF
    w_in_re, w_in_im = tl.load(slots + 0)[None], tl.load(slots + 1)[None]
    jac = jac_ptr + (tile * MP + j) * SF
    w_rr, w_ri = tl.load(jac + 2)[None], tl.load(jac + 3)[None]
    w_ir, w_ii = tl.load(jac + 4)[None], tl.load(jac + 5)[None]
    w_out_re, w_out_im = tl.load(slots + 6)[None], tl.load(slots + 7)[None]
    dac_re, dac_im = tl.load(slots + 16)[None], tl.load(slots + 17)[None]
    dac_u, dac_prev, skip = tl.load(tiles + 0), tl.load(tiles + 1), tl.load(tiles + 2)
    unit = tl.full([], 1.0, u_ptr.dtype.element_ty) / (DAC + (DAC == 0))  # in u's precision: 1/7 is no float32

    zeros2 = tl.zeros([BB, W], dtype=u_ptr.dtype.element_ty)
    g_re, g_im, g_next = zeros2, zeros2, tl.zeros([BB], dtype=u_ptr.dtype.element_ty)  # ∂ of x_s, of u_s via s+1
    a_in_re, a_in_im, a_rr, a_ri, a_ir, a_ii, a_out_re, a_out_im = (zeros2, zeros2, zeros2, zeros2, zeros2, zeros2,
                                                                      zeros2, zeros2)
    a_skip = tl.zeros([BB], dtype=u_ptr.dtype.element_ty)
    where = ((ch % H) * C + ch // H) * B + b
    kept = row.to(tl.int64) * B * W + b[:, None] * W + j[None, :]
    gu_at = gu_ptr + t.to(tl.int64) * steps * H * C * B + where
    for i in range(0, steps):
        s = (steps - 1 - i).to(tl.int64)  # offsets of the kept tensors pass 2^31 at a few hundred sequences
        u_t = tl.load(u_ptr + s * H * C * B + where, mask=live, other=0.0)
        started = live & (b * 0 + s > 0)  # u_{−1} and x_{−1} are 0
        u_prev = tl.load(u_ptr + (s - 1) * H * C * B + where, mask=started, other=0.0)
        before = x_ptr + 2 * ((s - 1) * NT * C * H * B * W + kept)
        kept_re = tl.load(before, mask=started[:, None] & live2, other=0).to(u_t.dtype)
        kept_im = tl.load(before + 1, mask=started[:, None] & live2, other=0).to(u_t.dtype)
        inside = tl.load(inside_ptr + s * NT * C * H * B * W + kept, mask=live2, other=0)
        inside_y = tl.load(inside_y_ptr + (s * NT * C * H + row) * B + b, mask=live, other=0)
        gy = tl.load(gy_ptr + (s * T + t) * H * C * B + where, mask=live, other=0.0) * inside_y.to(u_t.dtype)
        g_out_re = g_re * inside.to(u_t.dtype)
        g_out_im = g_im * inside.to(u_t.dtype)
        v_u = _convert(u_t, dac_u, unit, DAC)[:, None]
        v_prev = _convert(u_prev, dac_prev, unit, DAC)
        if DAC > 0:  # kept as DAC codes
            v_re = tl.minimum(tl.maximum(kept_re, -DAC), DAC) * unit
            v_im = tl.minimum(tl.maximum(kept_im, -DAC), DAC) * unit
            inside_x = ((tl.abs(kept_re) <= DAC) & (tl.abs(kept_im) <= DAC)).to(u_t.dtype)  # a mode's parts together
        else:
            v_re, v_im, inside_x = kept_re * dac_re, kept_im * dac_im, kept_re * 0 + 1
        a_in_re += g_out_re * v_u
        a_in_im += g_out_im * v_u
        a_rr += g_out_re * v_re
        a_ri += g_out_im * v_re
        a_ir += g_out_re * v_im
        a_ii += g_out_im * v_im
        a_out_re += gy[:, None] * v_re
        a_out_im += gy[:, None] * v_im
        a_skip += gy * v_prev
        g_v_re = g_out_re * w_rr + g_out_im * w_ri + gy[:, None] * w_out_re
        g_v_im = g_out_re * w_ir + g_out_im * w_ii + gy[:, None] * w_out_im
        g_u = tl.sum(g_out_re * w_in_re + g_out_im * w_in_im, axis=1) * dac_u * unit * _inside(u_t, dac_u, DAC)
        tl.store(gu_at + s * H * C * B, g_u + g_next, mask=live)
        g_next = gy * skip * dac_prev * unit * _inside(u_prev, dac_prev, DAC)
        carry_re = g_v_re * dac_re * unit * inside_x
        carry_im = g_v_im * dac_im * unit * inside_x
        if RESIDUAL:
            carry_re, carry_im = carry_re + g_re, carry_im + g_im
        g_re, g_im = carry_re, carry_im
    out = gw_ptr + ((row * tl.num_programs(1) + tl.program_id(1)) * 9) * W + j
    tl.store(out + 0 * W, tl.sum(a_in_re, axis=0))
    tl.store(out + 1 * W, tl.sum(a_in_im, axis=0))
    tl.store(out + 2 * W, tl.sum(a_rr, axis=0))
    tl.store(out + 3 * W, tl.sum(a_ri, axis=0))
    tl.store(out + 4 * W, tl.sum(a_ir, axis=0))
    tl.store(out + 5 * W, tl.sum(a_ii, axis=0))
    tl.store(out + 6 * W, tl.sum(a_out_re, axis=0))
    tl.store(out + 7 * W, tl.sum(a_out_im, axis=0))
    tl.store(out + 8 * W, tl.where(j == 0, tl.sum(a_skip, axis=0), 0.0))


def _levels(bits: int | None) -> int:
    return 0 if bits is None else converter_levels(bits)


def pack(w: dict[str, torch.Tensor], cells: dict[str, torch.Tensor], read_std: torch.Tensor | None,
         rows: torch.Tensor, cols: torch.Tensor, dac_bits: int | None, adc_bits: int | None
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """`CrossbarSSM`'s slot tensors as the kernel's fields, (C, H, T, MP, SLOT_FIELDS) and (C, H, T, TILE_FIELDS),
    slots zero-padded to a power of 2 (an empty slot's state stays 0). Noise variances are cells·std² of the column;
    a DAC gain is L/row full scale (1/row when ideal), an ADC gain L/column full scale and its step the inverse (1
    and 1 when ideal), with L = `converter_levels(bits)`."""
    C, _, H, T, m, _ = w["input"].shape
    dac, adc = _levels(dac_bits) or 1, _levels(adc_bits)
    w = {k: v[:, 0] for k, v in w.items()}
    cells = {k: v[:, 0].expand(C, *v.shape[2:]) for k, v in cells.items()}
    std = read_std[:, 0] if read_std is not None else w["input"].new_zeros(C, H, T, 2 * m + 1)
    var_x, var_y = std[..., :2 * m].unflatten(-1, (m, 2)) ** 2, std[..., -1] ** 2
    dac_x = (dac / rows[:, :, FIXED_ROWS:].unflatten(-1, (m, 2))).expand(C, H, T, m, 2)
    cols_x, cols_y = cols[..., :2 * m].unflatten(-1, (m, 2)).expand(C, H, T, m, 2), cols[..., -1].expand(C, H, T)
    adc_x, step_x = (adc / cols_x, cols_x / adc) if adc else (torch.ones_like(cols_x),) * 2
    adc_y, step_y = (adc / cols_y, cols_y / adc) if adc else (torch.ones_like(cols_y),) * 2
    block, cells_block = w["block"], cells["block"]
    slot = torch.stack([
        w["input"][..., 0], w["input"][..., 1], block[..., 0, 0], block[..., 0, 1], block[..., 1, 0], block[..., 1, 1],
        w["out"][..., 0], w["out"][..., 1],
        cells["input"][..., 0] * var_x[..., 0], cells_block[..., 0, 0] * var_x[..., 0],
        cells_block[..., 1, 0] * var_x[..., 0],
        cells["input"][..., 1] * var_x[..., 1], cells_block[..., 0, 1] * var_x[..., 1],
        cells_block[..., 1, 1] * var_x[..., 1],
        cells["out"][..., 0] * var_y[..., None], cells["out"][..., 1] * var_y[..., None],
        dac_x[..., 0], dac_x[..., 1], adc_x[..., 0], adc_x[..., 1], step_x[..., 0], step_x[..., 1]], dim=-1)
    tile = torch.stack([(dac / rows[..., 0]).expand(C, H, T), (dac / rows[..., 1]).expand(C, H, T), w["skip"],
                        cells["skip"] * var_y, adc_y, step_y], dim=-1)
    slots = slot.new_zeros(C, H, T, triton.next_power_of_2(m), SLOT_FIELDS)
    slots[..., :m, :] = slot
    return slots, tile.contiguous()


def slot_widths(slots: torch.Tensor) -> list[int]:
    """Per tile index, the kernel's slot width (`mapping.live_widths`): a slot is live if any weight or noise
    variance is nonzero. Reads the device (one host sync)."""
    return live_widths((slots[..., :WEIGHT_FIELDS] != 0).any(-1))


def _warps(warps: int, block: int, width: int) -> int:
    """No more warps than the block's entries fill (32 each)."""
    return min(warps, max(1, block * width // 32))


def _code_dtype(levels: int) -> torch.dtype | None:
    """How the forward pass keeps the state for the backward: DAC codes in [−levels − 1, levels + 1]."""
    return None if levels == 0 else torch.int16 if levels < 2 ** 15 - 1 else torch.int32


def launches(widths: list[int]) -> list[tuple[int, int, int]]:
    """(first tile index, count, width) per kernel launch: consecutive tile indices of one width share a launch."""
    groups = []
    for t, width in enumerate(widths):
        if groups and groups[-1][2] == width:
            groups[-1] = (groups[-1][0], groups[-1][1] + 1, width)
        else:
            groups.append((t, 1, width))
    return groups


class _Scan(torch.autograd.Function):
    """All tile indices' `_scan` on the padded inputs (steps, H, C, B) → y (steps, T, H, C, B); with gradients
    (`_scan_grad`) for the inputs, the slot weights and the skip weights when any of them needs one."""

    @staticmethod
    def forward(ctx, inputs, slots, tiles, jacobian, seed, dac, adc, noise, residual, block, warps, widths):
        steps, H, C, B = inputs.shape
        T, MP = slots.shape[2:4]
        save = any(ctx.needs_input_grad[:3])
        outputs = inputs.new_empty(steps, T, H, C, B)
        ctx.launches, ctx.kept = launches(widths or slot_widths(slots)), []
        for t0, count, width in ctx.launches:
            rows = count * C * H
            kept = (inputs.new_empty(steps, rows, B, width, 2, dtype=_code_dtype(dac) or inputs.dtype),
                    inputs.new_empty(steps, rows, B, width, dtype=torch.int8),
                    inputs.new_empty(steps, rows, B, dtype=torch.int8)) if save else (inputs,) * 3
            _scan[(C * H, triton.cdiv(B, block), count)](
                inputs, outputs, slots, tiles, *kept, seed, steps, B, C, H, T, t0, MP, SF=SLOT_FIELDS,
                TF=TILE_FIELDS, W=width, BB=block, DAC=dac, ADC=adc, NOISE=noise, RESIDUAL=residual, SAVE=save,
                num_warps=_warps(warps, block, width))
            ctx.kept.append(kept if save else None)
        if save:
            ctx.save_for_backward(inputs, slots, tiles, jacobian)
            ctx.settings = dac, residual, block, warps
        return outputs

    @staticmethod
    def backward(ctx, g_outputs):
        inputs, slots, tiles, jacobian = ctx.saved_tensors
        dac, residual, block, warps = ctx.settings
        steps, H, C, B = inputs.shape
        T, MP = slots.shape[2:4]
        g_outputs, g_inputs = g_outputs.contiguous(), inputs.new_empty(T, *inputs.shape)
        g_slots, g_tiles = torch.zeros_like(slots), torch.zeros_like(tiles)
        blocks = triton.cdiv(B, block)
        for (t0, count, width), kept in zip(ctx.launches, ctx.kept):
            g_weights = inputs.new_empty(count, C * H, blocks, 9, width)
            _scan_grad[(C * H, blocks, count)](
                inputs, g_outputs, g_inputs, *kept, g_weights, slots, jacobian, tiles, steps, B, C, H, T, t0, MP,
                SF=SLOT_FIELDS, TF=TILE_FIELDS, W=width, BB=block, DAC=dac, RESIDUAL=residual,
                num_warps=_warps(warps, block, width))
            g_weights = g_weights.sum(2).view(count, C, H, 9, width).movedim(0, 2)  # (C, H, count, 9, width)
            g_slots[:, :, t0:t0 + count, :width, :8] = g_weights[..., :8, :].transpose(-1, -2)
            g_tiles[:, :, t0:t0 + count, 2] = g_weights[..., 8, 0]
        ctx.kept = []
        return g_inputs.sum(0), g_slots, g_tiles, *(None,) * 9


def scan(u: torch.Tensor, w: dict[str, torch.Tensor], cells: dict[str, torch.Tensor],
         read_std: torch.Tensor | None, rows: torch.Tensor, cols: torch.Tensor, dac_bits: int | None,
         adc_bits: int | None, residual: bool = False, jacobian: torch.Tensor | None = None, block: int = 16,
         warps: int = 2, widths: list[int] | None = None) -> torch.Tensor:
    """y (C, B, H, L) of the tiles in slot form (arguments as `tile_read.tile_step`) on inputs u (C, B, H, L);
    the noise streams' seed is drawn from torch's default generator. `block` sequences per program and `warps`
    per program (fewer where a narrow tile's block has under 32 entries per warp): the fastest on an H100 for the
    sMNIST model (benchmarks/simulator_speed.py). Differentiable in u and the weights w (hardware-in-the-loop
    training): back-propagation through time in one kernel per tile index, from each step's kept state and ADC
    ranges, with `tile_read.convert`'s straight-through converters; the read noise's spread carries no gradient.
    `widths`: per tile index a slot width covering its live slots (default `slot_widths`, which reads the device)."""
    C, B, H, L = u.shape
    slots, tiles = pack(w, cells, read_std, rows, cols, dac_bits, adc_bits)
    steps = L + 1 + (L + 1) % 2  # one more to flush the last output, rounded up to pairs
    inputs = torch.nn.functional.pad(u.permute(3, 2, 0, 1), (0, 0, 0, 0, 0, 0, 0, steps - L)).contiguous()
    seed = int(torch.randint(2 ** 31 - 1, ()))
    through = slots.detach()
    if jacobian is not None:
        through = through.clone()
        through[..., :jacobian.shape[-3], 2:6] = jacobian[:, 0].flatten(-2)  # the block fields, as `pack` orders them
    outputs = _Scan.apply(inputs, slots, tiles, through, seed, _levels(dac_bits), _levels(adc_bits),
                          read_std is not None, residual, block, warps, widths)
    return outputs[1:L + 1].sum(1).permute(2, 3, 1, 0)  # the channel's tiles' y, added digitally
