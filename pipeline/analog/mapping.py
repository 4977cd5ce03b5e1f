"""Mapping an S4D layer onto crossbar tiles (DESIGN.md §2 "Crossbar mapping in detail").

Each channel's live modes (B̄ₙ ≠ 0 and Cₙ ≠ 0) are split into groups of at most `per_tile` modes, one tile per
group. With Āₙ = a + ib, B̄ₙ = c + id, Cₙ = r + is and slot j of a tile holding mode n, the tile's real matrix
(rows: inputs through DACs, columns: outputs through ADCs) is

    row u_t        → column x_j.re: c,  x_j.im: d
    row u_{t−1}    → column y: D                         (first tile of the channel only)
    row x_j.re     → column x_j.re: a,  x_j.im: b,  y: 2r
    row x_j.im     → column x_j.re: −b, x_j.im: a,  y: −2s

so one read gives x_t = Ā·x_{t−1} + B̄·u_t and y_{t−1} = 2·Re(C·x_{t−1}) + D·u_{t−1}: the output column lags one
step. With the `residual` mapping the diagonal holds a − 1 instead of a: the tile stores Ā − I, its state columns
read the increment (Ā − I)·x_{t−1} + B̄·u_t, and the state is added back digitally after the ADC
(x_t = x_{t−1} + increment; 2m additions per tile and step). Slow modes have Ā close to 1, so their cells then
hold values of the size of B̄ (both ≈ Δ) instead of ≈ 1, and programming errors scale with |Ā − I|, not |Ā|.

Each signed weight is a differential pair G+ − G− (two physical columns per logical one), scaled per column so
that the column's largest |weight × row full scale| spans [g_min, g_max]; the column's digital gain undoes the
scaling after its ADC (so a column of small Ā entries is not drowned by the large C entries).

Row gains (`ROW_GAINS`): a row can be driven at 1/k of the DAC's voltage and its cells programmed k times larger,
with k ≥ 1 per tile and row the largest factor that leaves every column's largest |w̃| unchanged:
k = max(1, min over the row's cells of (its column's largest |w̃|) / |w̃|). `inputs` does so for the rows of u_t (B̄)
and u_{t−1} (D), `all` for every row, `none` for no row. B̄ and D, with the `full` mapping 5–20× smaller than the Ā
beside them, then span the conductance range instead of a sliver of it, so programming noise, which scales with
g_max, no longer drowns them. The currents, converters and cells are the same; each row needs its own drive level.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from pipeline.model.s4d import S4D

FIXED_ROWS = 2  # u_t and u_{t−1}
MAPPINGS = ("full", "residual")
ROW_GAINS = ("none", "inputs", "all")


def modes_per_tile(rows: int, cols: int) -> int:
    """Modes that fit a rows × cols tile: 2 + 2m rows and 2·(2m + 1) physical columns (G+/G− pairs)."""
    return min((rows - FIXED_ROWS) // 2, (cols // 2 - 1) // 2)


@dataclass
class Layout:
    """The logical real matrices of one layer's tiles: weights (H, T, R, K), the cells that exist, and the S4D
    mode in each slot (H, T, m), −1 where empty. R = 2 + 2m rows, K = 2m + 1 columns (the last one is y);
    `residual`: the tiles hold Ā − I and the state is added back digitally; `row_gains`: which rows are driven at
    their own attenuated voltage (`ROW_GAINS`, module docstring)."""

    weights: torch.Tensor
    present: torch.Tensor
    modes: torch.Tensor
    residual: bool = False
    row_gains: str = "none"


def slot_modes(B_bar: torch.Tensor, C: torch.Tensor, per_tile: int) -> torch.Tensor:
    """The S4D mode in each slot (H, T, m), −1 where empty: each channel's live modes (B̄ₙ ≠ 0 and Cₙ ≠ 0) in
    ascending order, `per_tile` per tile (fewer if no channel has that many), as many tiles as the fullest
    channel needs."""
    live = (B_bar != 0) & (C != 0)
    H, n = live.shape
    most = int(live.sum(1).max())
    slots = max(1, min(per_tile, most))
    tiles = max(1, -(-most // slots))
    order = torch.argsort((~live).to(torch.int8), dim=1, stable=True)  # live modes first, ascending
    ranked = torch.where(torch.arange(n) < live.sum(1, keepdim=True), order, -1)
    modes = torch.full((H, tiles * slots), -1, dtype=torch.long)
    modes[:, :min(n, tiles * slots)] = ranked[:, :tiles * slots]
    return modes.view(H, tiles, slots)


def live_widths(live: torch.Tensor) -> list[int]:
    """Per tile index of live (…, T, slots), which slots hold cells: the power of 2 (≥ 2) that covers the last live
    slot of every tile at that index, the width a kernel runs the index at (an empty slot's state stays 0)."""
    position = torch.arange(1, live.shape[-1] + 1, device=live.device)
    used = (live.flatten(0, -3) * position).amax(dim=(0, 2)).tolist()
    return [max(2, 1 << (n - 1).bit_length()) for n in used]


def tensor_cells(rows: int, cols: int) -> dict[str, torch.Tensor]:
    """Which cells of a rows × cols logical tile (R = 2 + 2m, K = 2m + 1) hold which S4D tensor: boolean (R, K)
    masks for B̄ (row u_t), D (row u_{t−1}, column y), Ā (the state block; Ā − I with `residual`) and C (column y)."""
    row, col = torch.arange(rows)[:, None], torch.arange(cols)[None, :]
    state, y = row >= FIXED_ROWS, col == cols - 1
    return {"B_bar": (row == 0) & ~y, "D": (row == 1) & y, "A_bar": state & ~y, "C": state & y}


def tile_matrix(A_bar: torch.Tensor, B_bar: torch.Tensor, C: torch.Tensor, D: torch.Tensor, modes: torch.Tensor,
                residual: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(weights (H, T, R, K), the cells that exist) of the tiles holding `modes` (see the module docstring);
    differentiable in Ā, B̄, C and D, so a model can train on the tile it will be programmed as."""
    H, T, m = modes.shape
    modes = modes.to(A_bar.device)
    valid, index = modes >= 0, modes.clamp_min(0).view(H, -1)

    def pick(values: torch.Tensor) -> torch.Tensor:
        return torch.where(valid, values.gather(1, index).view(H, T, m), torch.zeros((), dtype=values.dtype,
                                                                                   device=values.device))

    a, b, c, d = pick(A_bar.real), pick(A_bar.imag), pick(B_bar.real), pick(B_bar.imag)
    r, s = pick(C.real), pick(C.imag)
    diagonal = torch.where(valid, a - 1.0, a) if residual else a
    first = (torch.arange(T, device=D.device) == 0)
    skip = torch.where(first, D[:, None], torch.zeros((), dtype=D.dtype, device=D.device))
    weights = dense(torch.stack([c, d], -1), torch.stack([torch.stack([diagonal, b], -1),
                                                         torch.stack([-b, diagonal], -1)], -2),
                    torch.stack([2 * r, -2 * s], -1), skip)
    cell = valid[..., None].expand(H, T, m, 2).to(weights.dtype)
    present = dense(cell, cell[..., None].expand(H, T, m, 2, 2), cell, first.expand(H, T).to(weights.dtype))
    return weights, present != 0


def dense(input: torch.Tensor, block: torch.Tensor, out: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """Tiles (…, R, K) from the slot form of `tile_read.slot_form` (its inverse): input (…, m, 2), block
    (…, m, 2, 2), out (…, m, 2), skip (…)."""
    *lead, m, _ = input.shape
    state = torch.diag_embed(block.movedim(-3, -1), dim1=-4, dim2=-2).reshape(*lead, 2 * m, 2 * m)
    no_state, no_y = input.new_zeros(*lead, 1, 2 * m), input.new_zeros(*lead, 1, 1)
    return torch.cat([torch.cat([input.reshape(*lead, 1, 2 * m), no_y], -1),
                      torch.cat([no_state, skip[..., None, None]], -1),
                      torch.cat([state, out.reshape(*lead, 2 * m, 1)], -1)], dim=-2)


def check_mapping(mapping: str, row_gains: str) -> None:
    if mapping not in MAPPINGS:
        raise ValueError(f"mapping = {mapping!r}: allowed {MAPPINGS}")
    if row_gains not in ROW_GAINS:
        raise ValueError(f"row_gains = {row_gains!r}: allowed {ROW_GAINS}")


@torch.no_grad()
def layout(ssm: S4D, per_tile: int, mapping: str = "full", row_gains: str = "none") -> Layout:
    check_mapping(mapping, row_gains)
    A_bar, B_bar, C, D = (t.detach().cpu() for t in ssm.discrete())
    modes = slot_modes(B_bar, C, per_tile)
    weights, present = tile_matrix(A_bar, B_bar, C, D, modes, mapping == "residual")
    return Layout(weights, present, modes, residual=mapping == "residual", row_gains=row_gains)


@dataclass
class TileProgram:
    """One layer as programmed: target conductances G+ and G− (siemens, (H, T, R, K)), the cells that exist,
    the full scale of each row's input (H, T, R) and each column's output (H, T, K) in signal units, each
    column's gain (H, T, K) from current (siemens × DAC input in [−1, 1]) back to signal units, the mode
    of each slot, whether the state is added back digitally (`Layout.residual`), and each row's attenuation
    k ≥ 1 (H, T, R): the row is driven at 1/k of the DAC's voltage (1 without row gains)."""

    g_plus: torch.Tensor
    g_minus: torch.Tensor
    present: torch.Tensor
    row_scale: torch.Tensor
    col_scale: torch.Tensor
    gain: torch.Tensor
    modes: torch.Tensor
    g_min: float
    g_max: float
    residual: bool = False
    row_gain: torch.Tensor | None = None

    def __post_init__(self):
        if self.row_gain is None:
            self.row_gain = torch.ones_like(self.row_scale)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self) if isinstance(getattr(self, f.name), torch.Tensor)}

    def per_dac_unit(self) -> torch.Tensor:
        """The weights the target conductances encode in signal units per DAC unit, (G+ − G−)·gain / k:
        (H, T, R, K)."""
        return (self.g_plus - self.g_minus) * self.gain[..., None, :] / self.row_gain[..., None]

    def read_cells(self) -> torch.Tensor:
        """Each weight's share of its column's read noise, (H, T, R, K): its two physical cells, read at 1/k of the
        voltage (variance ∝ v²)."""
        return 2 * self.present.to(self.row_gain.dtype) / self.row_gain[..., None] ** 2

    def weights(self) -> torch.Tensor:
        """The logical weights the program encodes, (H, T, R, K)."""
        return self.per_dac_unit() / self.row_scale[..., None]


class _RoundStraight(torch.autograd.Function):
    """round(x) forward, the identity backward (straight-through)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        return g


def attenuations(scaled: torch.Tensor, rows: str) -> torch.Tensor:
    """k (H, T, R) of tiles w̃ = w × row full scale (H, T, R, K) under row gains `rows` (module docstring): per
    row, max(1, min over its nonzero cells of the column's largest |w̃| over the cell's |w̃|); 1 on rows without
    gain. No gradient: k only moves a weight between conductance and voltage."""
    if rows == "none":
        return torch.ones_like(scaled[..., 0])
    scaled = scaled.detach().abs()
    column_max = scaled.amax(dim=-2, keepdim=True)
    ratio = torch.where(scaled > 0, column_max / scaled.clamp_min(torch.finfo(scaled.dtype).tiny),
                        torch.full_like(scaled, torch.inf))
    gain = ratio.amin(dim=-1)
    gain = torch.where(torch.isfinite(gain), gain, torch.ones_like(gain)).clamp_min(1.0)
    if rows == "inputs":
        gain[..., FIXED_ROWS:] = 1.0
    return gain


def program(tiles: Layout, row_scale: torch.Tensor, col_scale: torch.Tensor, g_min: float, g_max: float,
            levels: int | None = None) -> TileProgram:
    """Target conductances: w̃ = w × row full scale (× k with row gains), normalised by its column's max
    |w̃|, split into G+ and G− in [g_min, g_max] (the unused one of the pair at g_min), rounded to `levels` if
    given."""
    scaled = tiles.weights * row_scale[..., None]
    row_gain = attenuations(scaled, tiles.row_gains)
    scaled = scaled * row_gain[..., None]
    w_max = scaled.abs().amax(dim=-2).clamp_min(torch.finfo(scaled.dtype).tiny)
    normalised = scaled / w_max[..., None, :]
    span = g_max - g_min

    zero = torch.zeros((), dtype=normalised.dtype, device=normalised.device)

    def conductance(level: torch.Tensor) -> torch.Tensor:
        if levels is not None:
            level = _RoundStraight.apply(level * (levels - 1)) / (levels - 1)
        return torch.where(tiles.present, g_min + span * level, torch.zeros_like(level))

    # a zero weight's ∂ goes to G+ only, so that ∂(G+ − G−)/∂w = span everywhere
    positive, negative = torch.where(normalised >= 0, normalised, zero), torch.where(normalised < 0, -normalised, zero)
    return TileProgram(conductance(positive), conductance(negative), tiles.present, row_scale, col_scale,
                       w_max / span, tiles.modes, g_min, g_max, tiles.residual, row_gain)
