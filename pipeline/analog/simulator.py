"""Crossbar simulator: the S4D recurrence run step by step on simulated tiles, for many chips at once.

Each step, every tile reads its inputs v = [u_t, u_{t−1}, x_{t−1}] through DACs (v/row full scale, rounded to
`dac_bits`, clipped to [−1, 1]), computes the column currents Σ_r v_r·(G+ − G−)_rk, adds read noise, and converts
them back to signal units through ADCs (`adc_bits` over ± the column's full scale, clipped). The digitised state
(with the `residual` mapping: the previous state plus the digitised increment) is fed back; the y columns of a
channel's tiles are summed digitally. One extra step flushes the last output.
A tile is read in slot form (`slot_form`, `tile_step`): only the cells a mapped tile can hold, which gives the
dense tile product's currents with a fraction of the work. On GPUs the whole recurrence of a layer is one Triton
kernel (`tile_kernel.scan`, also differentiable); elsewhere `tile_step` runs step by step (`tile_read.read_layer`,
with its own backward pass through time).

Device non-idealities (drawn once per chip, then evaluated at a time t after programming):
    programmed   G = G_target + σ(G_target, t)·z,  z ~ N(0, 1), clipped at 0
    drift        G(t) = G·(max(t, t0)/t0)^(−ν),  ν ~ N(ν̄, σ_ν) ≥ 0 per cell (PCM: ν's statistics depend on G)
    1/f noise    PCM: + G(t)·q(G)·√ln((t + t0 + t_r)/(2·t_r))·z', drawn once per chip and cell
    faults       stuck at g_min or g_max with the device's rates
    IR drop      G·(1 − ir_drop·d), d ∈ [0, 1] the cell's distance from the row driver and the column's ADC
    read noise   per read and cell, std read_noise·g_max·v (added to each column current; v the row's voltage)
Global drift compensation scales each tile's output by Σ|G+ − G−| at min(t, t0) over the same at t.
Mixing layers, norms, pooling and decoder stay digital, at the precision the model was trained with.
"""
from __future__ import annotations

import torch
from torch import nn

from pipeline.analog.device_model import Chips
from pipeline.analog.devices import DeviceConfig
from pipeline.analog.mapping import TileProgram
from pipeline.analog.tile_read import reader, slot_form, with_layers
from pipeline.model import S4DClassifier


class CrossbarSSM(nn.Module):
    """Stands in for one S4D layer: its recurrence on simulated tiles of C chips. Inputs (C·B, H, L)."""

    def __init__(self, tiles: TileProgram, weights: torch.Tensor, read_std: torch.Tensor,
                 dac_bits: int | None, adc_bits: int | None):
        super().__init__()
        for name, value in slot_form(weights).items():
            self.register_buffer(f"w_{name}", value.unsqueeze(1))
        for name, value in slot_form(tiles.read_cells().to(weights.dtype)).items():
            self.register_buffer(f"cells_{name}", value[None, None])
        self.read_noise = bool(read_std.any())
        self.register_buffer("read_std", read_std.unsqueeze(1))
        self.register_buffer("row_scale", tiles.row_scale)
        self.register_buffer("col_scale", tiles.col_scale)
        self.dac_bits, self.adc_bits, self.residual = dac_bits, adc_bits, tiles.residual

    def _slots(self, prefix: str) -> dict[str, torch.Tensor]:
        return {name: getattr(self, f"{prefix}_{name}") for name in ("input", "block", "out", "skip")}

    def forward(self, u: torch.Tensor, mode: str = "recurrent") -> torch.Tensor:
        w, cells = self._slots("w"), self._slots("cells")
        u = u.reshape(w["input"].shape[0], -1, *u.shape[1:])  # (C, B, H, L)
        read_std = self.read_std if self.read_noise else None
        y = reader(u)(u, w, cells, read_std, self.row_scale, self.col_scale, self.dac_bits, self.adc_bits,
                      self.residual)
        return y.reshape(-1, *y.shape[2:])


def simulated(model: S4DClassifier, programs: list[TileProgram], device: DeviceConfig, chips: int, t: float,
              dac_bits: int | None, adc_bits: int | None, seed: int = 0) -> S4DClassifier:
    """`model` with every S4D layer on `chips` chips programmed with `programs` on `device`, read at t s.
    Its inputs are (C·B, L, d_in): the batch repeated once per chip, chip-major."""
    generator = torch.Generator().manual_seed(seed)
    layers = []
    for tiles in programs:
        weights, read_std = Chips(tiles, device, chips, generator).weights(t)
        layers.append(CrossbarSSM(tiles, weights, read_std, dac_bits, adc_bits))
    param = next(model.parameters())
    return with_layers(model, layers).to(device=param.device, dtype=param.dtype)
