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
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from pipeline.model.s4d import S4D

FIXED_ROWS = 2  # u_t and u_{t−1}
MAPPINGS = ("full", "residual")


def modes_per_tile(rows: int, cols: int) -> int:
    """Modes that fit a rows × cols tile: 2 + 2m rows and 2·(2m + 1) physical columns (G+/G− pairs)."""
    return min((rows - FIXED_ROWS) // 2, (cols // 2 - 1) // 2)


@dataclass
class Layout:
    """The logical real matrices of one layer's tiles: weights (H, T, R, K), the cells that exist, and the S4D
    mode in each slot (H, T, m), −1 where empty. R = 2 + 2m rows, K = 2m + 1 columns (the last one is y);
    `residual`: the tiles hold Ā − I and the state is added back digitally."""

    weights: torch.Tensor
    present: torch.Tensor
    modes: torch.Tensor
    residual: bool = False


@torch.no_grad()
def layout(ssm: S4D, per_tile: int, mapping: str = "full") -> Layout:
    if mapping not in MAPPINGS:
        raise ValueError(f"mapping = {mapping!r}: allowed {MAPPINGS}")
    diagonal_shift = 1.0 if mapping == "residual" else 0.0
    A_bar, B_bar, C, D = (t.detach().cpu() for t in ssm.discrete())
    live = [torch.nonzero((B_bar[h] != 0) & (C[h] != 0)).flatten() for h in range(A_bar.shape[0])]
    slots = max(1, min(per_tile, max(len(n) for n in live)))
    tiles = max(1, max(-(-len(n) // slots) for n in live))
    H, R, K = A_bar.shape[0], FIXED_ROWS + 2 * slots, 2 * slots + 1
    weights = torch.zeros(H, tiles, R, K, dtype=A_bar.real.dtype)
    present = torch.zeros(H, tiles, R, K, dtype=torch.bool)
    modes = torch.full((H, tiles, slots), -1, dtype=torch.long)
    for h in range(H):
        weights[h, 0, 1, -1], present[h, 0, 1, -1] = D[h], True
        for i, n in enumerate(live[h].tolist()):
            t, j = divmod(i, slots)
            modes[h, t, j] = n
            a, b, c, d = A_bar[h, n].real, A_bar[h, n].imag, B_bar[h, n].real, B_bar[h, n].imag
            r, s = C[h, n].real, C[h, n].imag
            p, q = FIXED_ROWS + 2 * j, FIXED_ROWS + 2 * j + 1
            diagonal = a - diagonal_shift
            for row, col, value in ((0, 2 * j, c), (0, 2 * j + 1, d), (p, 2 * j, diagonal), (p, 2 * j + 1, b),
                                    (q, 2 * j, -b), (q, 2 * j + 1, diagonal), (p, K - 1, 2 * r), (q, K - 1, -2 * s)):
                weights[h, t, row, col], present[h, t, row, col] = value, True
    return Layout(weights, present, modes, residual=mapping == "residual")


@dataclass
class TileProgram:
    """One layer as programmed: target conductances G+ and G− (siemens, (H, T, R, K)), the cells that exist,
    the full scale of each row's input (H, T, R) and each column's output (H, T, K) in signal units, each
    column's gain (H, T, K) from current (siemens × DAC input in [−1, 1]) back to signal units, the mode
    of each slot, and whether the state is added back digitally (`Layout.residual`)."""

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

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self) if isinstance(getattr(self, f.name), torch.Tensor)}

    def weights(self) -> torch.Tensor:
        """The logical weights the program encodes, (H, T, R, K)."""
        return (self.g_plus - self.g_minus) * self.gain[..., None, :] / self.row_scale[..., None]


def program(tiles: Layout, row_scale: torch.Tensor, col_scale: torch.Tensor, g_min: float, g_max: float,
            levels: int | None = None) -> TileProgram:
    """Target conductances: w̃ = w × row full scale, normalised by its column's max |w̃|, split into G+ and G−
    in [g_min, g_max] (the unused one of the pair at g_min), rounded to `levels` if given."""
    scaled = tiles.weights * row_scale[..., None]
    w_max = scaled.abs().amax(dim=-2).clamp_min(torch.finfo(scaled.dtype).tiny)
    normalised = scaled / w_max[..., None, :]
    span = g_max - g_min

    def conductance(x: torch.Tensor) -> torch.Tensor:
        level = x.clamp_min(0)
        if levels is not None:
            level = torch.round(level * (levels - 1)) / (levels - 1)
        return torch.where(tiles.present, g_min + span * level, torch.zeros_like(level))

    return TileProgram(conductance(normalised), conductance(-normalised), tiles.present, row_scale, col_scale,
                       w_max / span, tiles.modes, g_min, g_max, tiles.residual)
