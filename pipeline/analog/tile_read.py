"""Reading tiles: the tiles in slot form and one read of every tile, the step loop, and a model
whose S4D layers are replaced (by simulated or probing layers). The simulator's arithmetic, without devices."""
from __future__ import annotations

import copy
import functools

import torch
from torch import nn

from pipeline.analog.converters import convert
from pipeline.analog.mapping import FIXED_ROWS
from pipeline.analog.noise import set_noise
from pipeline.model import S4DClassifier


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


def read_layer(u: torch.Tensor, w: dict, cells: dict, read_std: torch.Tensor | None, rows: torch.Tensor,
               cols: torch.Tensor, dac_bits: int | None, adc_bits: int | None, residual: bool,
               jacobian: torch.Tensor | None = None) -> torch.Tensor:
    """y (C, B, H, L) of u (C, B, H, L): the tiles in slot form (`tile_step`'s arguments) read step by step."""
    tiles, slots = w["input"].shape[-3:-1]
    return run_steps(u, tiles, slots, functools.partial(
        tile_step, w=w, cells=cells, read_std=read_std, rows=rows, cols=cols, dac_bits=dac_bits, adc_bits=adc_bits,
        residual=residual, jacobian=jacobian))


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


def tile_step(x, u_t, u_prev, w, cells, read_std, rows, cols, dac_bits: int | None, adc_bits: int | None,
              residual: bool = False, jacobian: torch.Tensor | None = None):
    """One read of every tile in slot form: the same currents as the dense tile product, without its empty cells.
    With `residual` the state columns read an increment, and the state is added back digitally.

    x (C, B, H, T, m, 2) the digitised state, u_t and u_prev (C, B, H); w and cells (number of physical cells per
    weight) in `slot_form` with leading (C, 1, H, T) and (1, 1, H, T); read_std (C, 1, H, T, K) or None; rows
    (H, T, R) and cols (H, T, K) the converters' full scales. Returns (next state, y_{t−1} per tile (C, B, H, T)).
    `jacobian` (like w["block"], no gradient): the state-to-state weights the gradient flows back through, in
    place of w["block"] (same values forward; the weights' own gradients unchanged): see `TileArithmetic`."""
    m = x.shape[-2]
    v_u = convert(u_t[..., None] / rows[..., 0], dac_bits, 1.0)[..., None, None]  # (C, B, H, T, 1, 1)
    v_prev = convert(u_prev[..., None] / rows[..., 1], dac_bits, 1.0)
    v_x = convert(x / rows[..., FIXED_ROWS:].unflatten(-1, (m, 2)), dac_bits, 1.0, pairs=True)
    v_re, v_im = v_x[..., :1], v_x[..., 1:]
    if jacobian is None:
        out_x = v_u * w["input"] + v_re * w["block"][..., 0, :] + v_im * w["block"][..., 1, :]
    else:  # the same currents; ∂/∂x through `jacobian`, ∂/∂w["block"] from this read's inputs
        out_x = v_u * w["input"] + v_re.detach() * w["block"][..., 0, :] + v_im.detach() * w["block"][..., 1, :]
        through = v_re * jacobian[..., 0, :] + v_im * jacobian[..., 1, :]
        out_x = out_x + (through - through.detach())
    out_y = (v_x * w["out"]).sum((-2, -1)) + v_prev * w["skip"]
    if read_std is not None:  # std of the column current: read_noise·g_max·gain·√(Σ v² over the column's cells)
        v_u, v_re, v_im, v_x, v_prev = (v.detach() for v in (v_u, v_re, v_im, v_x, v_prev))  # no ∂ through √0
        spread_x = (v_u ** 2 * cells["input"] + v_re ** 2 * cells["block"][..., 0, :]
                    + v_im ** 2 * cells["block"][..., 1, :]).sqrt()
        spread_y = ((v_x ** 2 * cells["out"]).sum((-2, -1)) + v_prev ** 2 * cells["skip"]).sqrt()
        out_x = out_x + torch.randn_like(out_x) * spread_x * read_std[..., :2 * m].unflatten(-1, (m, 2))
        out_y = out_y + torch.randn_like(out_y) * spread_y * read_std[..., -1]
    state = convert(out_x, adc_bits, cols[..., :2 * m].unflatten(-1, (m, 2)), pairs=True)
    return state + x if residual else state, convert(out_y, adc_bits, cols[..., -1])


def with_layers(model: S4DClassifier, layers: list[nn.Module]) -> S4DClassifier:
    """A copy of `model` (noise off, evaluation mode) whose S4D layers are replaced by `layers`."""
    copied = copy.deepcopy(model).eval()
    set_noise(copied, 0.0)
    for block, layer in zip(copied.blocks, layers):
        block.ssm = layer
    return copied
