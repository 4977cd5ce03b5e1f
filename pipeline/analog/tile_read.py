"""Reading tiles: the tiles in slot form and one read of every tile, the step loop with its backward pass through
time, and a model whose S4D layers are replaced (by simulated or probing layers). The simulator's arithmetic,
without devices."""
from __future__ import annotations

import copy
import functools
from typing import NamedTuple

import torch
from torch import nn

from pipeline.analog.converters import Converter, adc, dac
from pipeline.analog.mapping import FIXED_ROWS
from pipeline.analog.noise import set_noise
from pipeline.model import S4DClassifier


class Converters(NamedTuple):
    """The converters of one layer's tiles, from the row (H, T, R) and column (H, T, K) full scales: DACs of u_t,
    u_{t−1} (H, T) and the state (H, T, m, 2); ADCs of the state columns (H, T, m, 2) and of y (H, T)."""

    u: Converter
    u_prev: Converter
    x: Converter
    state: Converter
    y: Converter

    @classmethod
    def of(cls, rows: torch.Tensor, cols: torch.Tensor, dac_bits: int | None, adc_bits: int | None) -> Converters:
        m = (cols.shape[-1] - 1) // 2
        return cls(dac(rows[..., 0], dac_bits), dac(rows[..., 1], dac_bits),
                   dac(rows[..., FIXED_ROWS:].unflatten(-1, (m, 2)), dac_bits),
                   adc(cols[..., :2 * m].unflatten(-1, (m, 2)), adc_bits), adc(cols[..., -1], adc_bits))

    @classmethod
    def unit(cls) -> Converters:
        """No converters and unit full scales: the signals themselves."""
        return cls(*(adc(1.0, None),) * 5)


class Kept(NamedTuple):
    """What one step keeps for the backward pass: the DACs' outputs and where each converter did not clip."""

    v_u: torch.Tensor
    v_prev: torch.Tensor
    v_x: torch.Tensor
    inside_u: torch.Tensor | None
    inside_prev: torch.Tensor | None
    inside_x: torch.Tensor | None
    inside_state: torch.Tensor | None
    inside_y: torch.Tensor | None


def pair_map(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(p, q), complex (…), of the real 2 × 2 maps m (…, 2, 2) of a mode's (Re, Im) pair as a row vector,
    (v₀, v₁) ↦ (v₀·m₀₀ + v₁·m₁₀, v₀·m₀₁ + v₁·m₁₁). In z = v₀ + i·v₁ that map is z ↦ p·z + q·z̄ with
    p = (m₀₀ + m₁₁ + i(m₀₁ − m₁₀))/2 and q = (m₀₀ − m₁₁ + i(m₀₁ + m₁₀))/2: two complex products of whole tensors
    in place of four real ones that broadcast over the pair's axis (several times slower on CPUs)."""
    m00, m01, m10, m11 = m[..., 0, 0], m[..., 0, 1], m[..., 1, 0], m[..., 1, 1]
    return torch.complex(m00 + m11, m01 - m10).mul_(0.5), torch.complex(m00 - m11, m01 + m10).mul_(0.5)


def pair_map_grad(g_p: torch.Tensor, g_q: torch.Tensor) -> torch.Tensor:
    """∂/∂m (…, 2, 2) of the map's gradients as g_p = Σ z̄·g and g_q = Σ z·g (g the gradient of the output pairs):
    m₀₀ ← Re(g_p + g_q)/2, m₀₁ ← Im(g_p + g_q)/2, m₁₀ ← Im(g_q − g_p)/2, m₁₁ ← Re(g_p − g_q)/2."""
    total, diff = g_p + g_q, g_p - g_q
    return torch.stack([torch.stack([total.real, total.imag], -1), torch.stack([-diff.imag, diff.real], -1)],
                       -2).mul_(0.5)


def through_pairs(v: torch.Tensor, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """v (…, 2) real pairs through the map (p, q) of `pair_map`: real (…, 2)."""
    z = torch.view_as_complex(v.contiguous())
    return torch.view_as_real((z * p).add_(z.conj() * q))


def with_pair_maps(slots: dict) -> dict:
    """Slot-form tensors with the (p, q) of their state-to-state block (`pair_map`) under "block_map"."""
    return {**slots, "block_map": pair_map(slots["block"])}


def tile_step(x: torch.Tensor, u_t: torch.Tensor, u_prev: torch.Tensor, w: dict, cells: dict,
              read_std: tuple[torch.Tensor, torch.Tensor] | None, converters: Converters, residual: bool = False,
              keep: bool = False) -> tuple[torch.Tensor, torch.Tensor, Kept | None]:
    """One read of every tile in slot form: the same currents as the dense tile product, without its empty cells.
    With `residual` the state columns read an increment, and the state is added back digitally.

    x (C, B, H, T, m, 2) the digitised state, u_t and u_prev (C, B, H); w and cells (number of physical cells per
    weight) in `slot_form` with leading (C, 1, H, T) and (1, 1, H, T), and their block's `pair_map`
    (`with_pair_maps`; cells' only with read noise); read_std (std of the state columns (C, 1, H, T, m, 2), of y
    (C, 1, H, T)) or None. The column currents of DAC outputs v are
    x_j ← v_u·input_j + v_re·block_j[0] + v_im·block_j[1], y ← Σ_j v_j·out_j + v_prev·skip, plus read noise of std
    std·√(Σ v²·cells) over the column's cells. Returns (next state, y_{t−1} per tile (C, B, H, T), `Kept` if `keep`)."""
    v_u, inside_u = converters.u(u_t.unsqueeze(-1), keep=keep)  # (C, B, H, T)
    v_prev, inside_prev = converters.u_prev(u_prev.unsqueeze(-1), keep=keep)
    v_x, inside_x = converters.x(x, pairs=True, keep=keep)
    v_in = v_u[..., None, None]
    out_x = through_pairs(v_x, *w["block_map"]).add_(v_in * w["input"])
    out_y = (v_x * w["out"]).sum((-2, -1)).add_(v_prev * w["skip"])
    if read_std is not None:
        square = v_x * v_x
        spread_x = through_pairs(square, *cells["block_map"]).add_(v_in * v_in * cells["input"]).sqrt_()
        spread_y = (square * cells["out"]).sum((-2, -1)).add_(v_prev * v_prev * cells["skip"]).sqrt_()
        out_x.add_(torch.randn_like(out_x).mul_(spread_x).mul_(read_std[0]))
        out_y.add_(torch.randn_like(out_y).mul_(spread_y).mul_(read_std[1]))
    state, inside_state = converters.state(out_x, pairs=True, keep=keep)
    y, inside_y = converters.y(out_y, keep=keep)
    kept = Kept(v_u, v_prev, v_x, inside_u, inside_prev, inside_x, inside_state, inside_y) if keep else None
    return (state + x if residual else state), y, kept


def run_steps(u: torch.Tensor, tiles: int, slots: int, step) -> torch.Tensor:
    """The step loop from a zero state (C, B, H, tiles, slots, 2): u (C, B, H, L), step(x, u_t, u_{t−1}) → (next
    state, y_{t−1} per tile (C, B, H, T)); returns y (C, B, H, L), summed over each channel's tiles."""
    x = u.new_zeros(*u.shape[:3], tiles, slots, 2)
    u_prev, outputs = torch.zeros_like(u[..., 0]), []
    for t in range(u.shape[-1] + 1):  # one extra step flushes the last output
        u_t = u[..., t] if t < u.shape[-1] else torch.zeros_like(u_prev)
        x, y = step(x, u_t, u_prev)
        if t > 0:
            outputs.append(y.sum(-1))
        u_prev = u_t
    return torch.stack(outputs, dim=-1)


def _masked(g: torch.Tensor, inside: torch.Tensor | None) -> torch.Tensor:
    return g if inside is None else g * inside


def _masked_pairs(g: torch.Tensor, inside: torch.Tensor | None) -> torch.Tensor:
    """g (…, m, 2) where the pair mask `inside` (…, m) holds, as complex products (no broadcast over the pair)."""
    return g if inside is None else torch.view_as_real(torch.view_as_complex(g.contiguous()) * inside)


class _Loop(torch.autograd.Function):
    """`run_steps` of `tile_step` with back-propagation through time by hand: converters straight-through where
    they did not clip (`Converter.slope`), the state's gradient through `jacobian`'s block weights (their
    transposes' `pair_map`), the weights' gradients summed over sequences and steps (the block's through
    `pair_map_grad`); the read noise's spread carries no gradient."""

    @staticmethod
    def forward(ctx, u, w_input, w_block, w_out, w_skip, jacobian, cells, read_std, converters, residual):
        w = with_pair_maps({"input": w_input, "block": w_block, "out": w_out, "skip": w_skip})
        kept = []

        def step(x, u_t, u_prev):
            x, y, k = tile_step(x, u_t, u_prev, w, cells, read_std, converters, residual, keep=True)
            kept.append(k)
            return x, y

        y = run_steps(u, *w_input.shape[-3:-1], step)
        ctx.kept, ctx.converters, ctx.residual = kept, converters, residual
        ctx.save_for_backward(w_input, w_block, w_out, w_skip, w_block if jacobian is None else jacobian)
        return y

    @staticmethod
    def backward(ctx, g_y):
        w_input, w_block, w_out, w_skip, through = ctx.saved_tensors
        conv, kept, L = ctx.converters, ctx.kept, g_y.shape[-1]
        back = pair_map(through.transpose(-1, -2))  # the state's gradient: through the block's transpose
        g_u = torch.zeros_like(g_y)
        g_input, g_out, g_skip = (torch.zeros_like(w) for w in (w_input, w_out, w_skip))
        g_p, g_q = (torch.view_as_complex(torch.zeros_like(w_input)) for _ in range(2))  # of the block's map
        g_state = None  # ∂/∂ the state step t writes; nothing reads the last one
        for t in range(L, -1, -1):
            k, g_v = kept[t], None  # g_v: ∂/∂ the state DACs' outputs of step t
            if g_state is not None:
                g_cols = _masked_pairs(g_state, k.inside_state)  # ∂/∂ the state columns' currents
                g_input += (g_cols * k.v_u[..., None, None]).sum_to_size(g_input.shape)
                z, g = torch.view_as_complex(k.v_x.contiguous()), torch.view_as_complex(g_cols.contiguous())
                g_p += (z.conj() * g).sum_to_size(g_p.shape)
                g_q += (z * g).sum_to_size(g_q.shape)
                g_v = through_pairs(g_cols, *back)
                if t < L:  # the last step reads a zero input
                    g_u[..., t] += (_masked((g_cols * w_input).sum((-2, -1)), k.inside_u) * conv.u.slope).sum(-1)
            if t > 0:  # y_{t−1}: one current per tile, a channel's tiles added
                g_current = _masked(g_y[..., t - 1].unsqueeze(-1).expand(k.v_prev.shape), k.inside_y)
                g_out += (g_current[..., None, None] * k.v_x).sum_to_size(g_out.shape)
                g_skip += (g_current * k.v_prev).sum_to_size(g_skip.shape)
                g_y_v = g_current[..., None, None] * w_out
                g_v = g_y_v if g_v is None else g_v.add_(g_y_v)
                g_u[..., t - 1] += (_masked(g_current * w_skip, k.inside_prev) * conv.u_prev.slope).sum(-1)
                g_x = _masked_pairs(g_v, k.inside_x) * conv.x.slope
                g_state = g_x.add_(g_state) if ctx.residual and g_state is not None else g_x
        ctx.kept = []
        return g_u, g_input, pair_map_grad(g_p, g_q), g_out, g_skip, *(None,) * 5


def read_layer(u: torch.Tensor, w: dict, cells: dict, read_std: torch.Tensor | None, rows: torch.Tensor,
               cols: torch.Tensor, dac_bits: int | None, adc_bits: int | None, residual: bool,
               jacobian: torch.Tensor | None = None) -> torch.Tensor:
    """y (C, B, H, L) of u (C, B, H, L): the tiles in slot form (`tile_step`'s arguments; read_std (C, 1, H, T, K))
    read step by step. Differentiable in u and w, by `_Loop`'s backward pass through time; `jacobian` (like
    w["block"], no gradient): the state-to-state weights the gradient flows back through, in place of w["block"]
    (the weights' own gradients unchanged): see `in_the_loop.TileArithmetic`."""
    tiles, slots = w["input"].shape[-3:-1]
    converters = Converters.of(rows, cols, dac_bits, adc_bits)
    std = None if read_std is None else (read_std[..., :2 * slots].unflatten(-1, (slots, 2)), read_std[..., -1])
    weights = (w["input"], w["block"], w["out"], w["skip"])
    cells = with_pair_maps(cells) if std is not None else cells
    if torch.is_grad_enabled() and any(v.requires_grad for v in (u, *weights)):
        return _Loop.apply(u, *weights, jacobian, cells, std, converters, residual)
    w = with_pair_maps(w)
    return run_steps(u, tiles, slots, lambda x, u_t, u_prev: tile_step(x, u_t, u_prev, w, cells, std, converters,
                                                                      residual)[:2])


def reader(u: torch.Tensor, widths: list[int] | None = None):
    """`read_layer`'s arithmetic for u's device: one Triton kernel per tile index on GPUs (tile_kernel.scan, with
    its own backward pass; `widths` its slot widths if known, see `mapping.live_widths`), the step loop elsewhere."""
    if u.is_cuda:
        from pipeline.analog.tile_kernel import scan  # Triton: GPUs only
        return functools.partial(scan, widths=widths)
    return read_layer


def slot_form(tiles: torch.Tensor) -> dict[str, torch.Tensor]:
    """The cells a tile can hold (see mapping.py), from dense (…, R, K) tiles into per-slot tensors: `input`
    (…, m, 2) row u_t → columns x_j; `block` (…, m, 2, 2) rows x_j → columns x_j; `out` (…, m, 2) rows x_j → y;
    `skip` (…) row u_{t−1} → y. Every other cell of a mapped tile is empty."""
    *lead, R, K = tiles.shape
    m = (K - 1) // 2
    state = tiles[..., FIXED_ROWS:, :2 * m].reshape(*lead, m, 2, m, 2)
    return {"input": tiles[..., 0, :2 * m].reshape(*lead, m, 2),
            "block": torch.diagonal(state, dim1=-4, dim2=-2).movedim(-1, -3),
            "out": tiles[..., FIXED_ROWS:, -1].reshape(*lead, m, 2), "skip": tiles[..., 1, -1]}


def with_layers(model: S4DClassifier, layers: list[nn.Module]) -> S4DClassifier:
    """A copy of `model` (noise off, evaluation mode) whose S4D layers are replaced by `layers`."""
    copied = copy.deepcopy(model).eval()
    set_noise(copied, 0.0)
    for block, layer in zip(copied.blocks, layers):
        block.ssm = layer
    return copied
