"""Range calibration and programming: each layer's tile layout and converter full scales, measured with ideal
tiles on training data (they do not depend on the device), then the conductances to program on a device."""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from pipeline.analog.devices import DeviceConfig
from pipeline.analog.mapping import FIXED_ROWS, Layout, TileProgram, layout, modes_per_tile, program
from pipeline.analog.tile_read import Converters, run_steps, slot_form, tile_step, with_layers, with_pair_maps
from pipeline.model import S4DClassifier


class _Probe(nn.Module):
    """Stands in for an S4D layer during range calibration: the tile recurrence with ideal converters and no
    noise, recording the largest |signal| on each row (u, the state) and column (the state, or its increment with
    the residual mapping; y)."""

    def __init__(self, tiles: Layout):
        super().__init__()
        H, T, R, K = tiles.weights.shape
        self.shape, self.residual = tiles.weights.shape, tiles.residual
        self.slots = slot_form(tiles.weights[None, None])
        self.u_max, self.state_max, self.y_max = torch.zeros(H), torch.zeros(H, T), torch.zeros(H, T)
        self.column_max = torch.zeros(H, T)

    def forward(self, u: torch.Tensor, mode: str = "recurrent") -> torch.Tensor:
        H, T, R, K = self.shape
        u = u.unsqueeze(0)
        w = with_pair_maps({name: value.to(u) for name, value in self.slots.items()})
        maxima = [m.to(u) for m in (self.u_max, self.state_max, self.y_max, self.column_max)]  # no sync per step
        unit = Converters.unit()

        def step(x, u_t, u_prev):
            new, y, _ = tile_step(x, u_t, u_prev, w, w, None, unit, self.residual)
            column = new - x if self.residual else new
            for i, (signal, dims) in enumerate(((u_t, (0, 1)), (new, (0, 1, 4, 5)), (y, (0, 1)),
                                                (column, (0, 1, 4, 5)))):
                maxima[i] = torch.maximum(maxima[i], signal.abs().amax(dim=dims))
            return new, y

        y = run_steps(u, T, (K - 1) // 2, step)
        self.u_max, self.state_max, self.y_max, self.column_max = (m.cpu() for m in maxima)
        return y.squeeze(0)

    def scales(self, margin: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(row full scale (H, T, R), column full scale (H, T, K)); 1 where a signal was always 0."""
        def full(x):
            return torch.where(x > 0, x * margin, torch.ones_like(x))
        H, T, R, K = self.shape
        u, s, y = full(self.u_max)[:, None, None].expand(H, T, FIXED_ROWS), full(self.state_max), full(self.y_max)
        rows = torch.cat([u, s[..., None].expand(H, T, R - FIXED_ROWS)], dim=-1)
        cols = torch.cat([full(self.column_max)[..., None].expand(H, T, K - 1), y[..., None]], dim=-1)
        return rows, cols


Measured = list[tuple[Layout, torch.Tensor, torch.Tensor]]  # per layer: layout, row and column full scales


@torch.no_grad()
def measure(model: S4DClassifier, batches: Iterable[torch.Tensor], rows: int, cols: int, margin: float,
            mapping: str = "full", row_gains: str = "none") -> Measured:
    """Every layer's tile layout (`mapping.MAPPINGS`, `mapping.ROW_GAINS`) and its DAC/ADC full scales,
    measured with ideal tiles on `batches`; they do not depend on the device, so one measurement serves every
    device."""
    per_tile = modes_per_tile(rows, cols)
    if per_tile < 1:
        raise ValueError(f"tile {rows}×{cols}: too small for one mode (needs ≥ 4 rows and ≥ 6 columns)")
    layouts = [layout(block.ssm, per_tile, mapping, row_gains) for block in model.blocks]
    probes = [_Probe(t) for t in layouts]
    probed = with_layers(model, probes)
    for x in batches:
        probed(x.to(next(model.parameters()).device))
    return [(t, *p.scales(margin)) for t, p in zip(layouts, probes)]


def program_all(measured: Measured, device: DeviceConfig) -> list[TileProgram]:
    return [program(t, rows, cols, device.g_min, device.g_max, device.levels) for t, rows, cols in measured]


def map_model(model: S4DClassifier, batches: Iterable[torch.Tensor], rows: int, cols: int, margin: float,
              device: DeviceConfig, mapping: str = "full", row_gains: str = "none") -> list[TileProgram]:
    """Tile programs of every layer on `device`: `measure`, then `program_all`."""
    return program_all(measure(model, batches, rows, cols, margin, mapping, row_gains), device)
