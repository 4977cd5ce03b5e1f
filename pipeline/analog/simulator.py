"""Crossbar simulator: the S4D recurrence run step by step on simulated tiles, for many chips at once.

Each step, every tile reads its inputs v = [u_t, u_{t−1}, x_{t−1}] through DACs (v/row full scale, rounded to
`dac_bits`, clipped to [−1, 1]), computes the column currents Σ_r v_r·(G+ − G−)_rk, adds read noise, and converts
them back to signal units through ADCs (`adc_bits` over ± the column's full scale, clipped). The digitised state
is fed back; the y columns of a channel's tiles are summed digitally. One extra step flushes the last output.
A tile is read in slot form (`slot_form`, `tile_step`): only the cells a mapped tile can hold, which gives the
dense tile product's currents with a fraction of the work. On GPUs the whole recurrence of a layer is one Triton
kernel (`tile_kernel.scan`); elsewhere `tile_step` runs step by step.

Device non-idealities (drawn once per chip, then evaluated at a time t after programming):
    programmed   G = G_target + σ(G_target, t)·z,  z ~ N(0, 1), clipped at 0
    drift        G(t) = G·(max(t, t0)/t0)^(−ν),  ν ~ N(ν̄, σ_ν) ≥ 0 per cell
    faults       stuck at g_min or g_max with the device's rates
    IR drop      G·(1 − ir_drop·d), d ∈ [0, 1] the cell's distance from the row driver and the column's ADC
    read noise   per read and cell, std read_noise·g_max (added to each column current)
Global drift compensation scales each tile's output by Σ|G+ − G−| at min(t, t0) over the same at t.
Mixing layers, norms, pooling and decoder stay digital, at the precision the model was trained with.
"""
from __future__ import annotations

import copy
import functools
import math
from collections.abc import Iterable

import torch
from torch import nn

from pipeline.analog.devices import DeviceConfig
from pipeline.analog.mapping import FIXED_ROWS, Layout, TileProgram, layout, modes_per_tile, program
from pipeline.analog.noise import set_noise
from pipeline.model import S4DClassifier


def convert(x: torch.Tensor, bits: int | None, full_scale: torch.Tensor | float) -> torch.Tensor:
    """A DAC or ADC: the grid {−2^(b−1), …, 2^(b−1)}·full_scale/2^(b−1), clipped; None = ideal (identity)."""
    if bits is None:
        return x
    step = full_scale / 2 ** (bits - 1)
    return torch.clamp(torch.round(x / step), -2 ** (bits - 1), 2 ** (bits - 1)) * step


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


class _Probe(nn.Module):
    """Stands in for an S4D layer during range calibration: the tile recurrence with ideal converters and no
    noise, recording the largest |signal| on each row and column."""

    def __init__(self, tiles: Layout):
        super().__init__()
        H, T, R, K = tiles.weights.shape
        self.shape = tiles.weights.shape
        self.slots = slot_form(tiles.weights[None, None])
        self.u_max, self.state_max, self.y_max = torch.zeros(H), torch.zeros(H, T), torch.zeros(H, T)

    def forward(self, u: torch.Tensor, mode: str = "recurrent") -> torch.Tensor:
        H, T, R, K = self.shape
        u = u.unsqueeze(0)
        w = {name: value.to(u) for name, value in self.slots.items()}
        rows, cols = u.new_ones(H, T, R), u.new_ones(H, T, K)
        maxima = [self.u_max.to(u), self.state_max.to(u), self.y_max.to(u)]  # on u's device: no sync per step

        def step(x, u_t, u_prev):
            x, y = tile_step(x, u_t, u_prev, w, w, None, rows, cols, None, None)
            for i, (signal, dims) in enumerate(((u_t, (0, 1)), (x, (0, 1, 4, 5)), (y, (0, 1)))):
                maxima[i] = torch.maximum(maxima[i], signal.abs().amax(dim=dims))
            return x, y

        y = run_steps(u, T, (K - 1) // 2, step)
        self.u_max, self.state_max, self.y_max = (m.cpu() for m in maxima)
        return y.squeeze(0)

    def scales(self, margin: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(row full scale (H, T, R), column full scale (H, T, K)); 1 where a signal was always 0."""
        def full(x):
            return torch.where(x > 0, x * margin, torch.ones_like(x))
        H, T, R, K = self.shape
        u, s, y = full(self.u_max)[:, None, None].expand(H, T, FIXED_ROWS), full(self.state_max), full(self.y_max)
        rows = torch.cat([u, s[..., None].expand(H, T, R - FIXED_ROWS)], dim=-1)
        cols = torch.cat([s[..., None].expand(H, T, K - 1), y[..., None]], dim=-1)
        return rows, cols


def _with_layers(model: S4DClassifier, layers: list[nn.Module]) -> S4DClassifier:
    """A copy of `model` (noise off, evaluation mode) whose S4D layers are replaced by `layers`."""
    copied = copy.deepcopy(model).eval()
    set_noise(copied, 0.0)
    for block, layer in zip(copied.blocks, layers):
        block.ssm = layer
    return copied


Measured = list[tuple[Layout, torch.Tensor, torch.Tensor]]  # per layer: layout, row and column full scales


@torch.no_grad()
def measure(model: S4DClassifier, batches: Iterable[torch.Tensor], rows: int, cols: int, margin: float) -> Measured:
    """Every layer's tile layout and its DAC/ADC full scales, measured with ideal tiles on `batches`; they do
    not depend on the device, so one measurement serves every device."""
    per_tile = modes_per_tile(rows, cols)
    if per_tile < 1:
        raise ValueError(f"tile {rows}×{cols}: too small for one mode (needs ≥ 4 rows and ≥ 6 columns)")
    layouts = [layout(block.ssm, per_tile) for block in model.blocks]
    probes = [_Probe(t) for t in layouts]
    probed = _with_layers(model, probes)
    for x in batches:
        probed(x.to(next(model.parameters()).device))
    return [(t, *p.scales(margin)) for t, p in zip(layouts, probes)]


def program_all(measured: Measured, device: DeviceConfig) -> list[TileProgram]:
    return [program(t, rows, cols, device.g_min, device.g_max, device.levels) for t, rows, cols in measured]


def map_model(model: S4DClassifier, batches: Iterable[torch.Tensor], rows: int, cols: int, margin: float,
              device: DeviceConfig) -> list[TileProgram]:
    """Tile programs of every layer on `device`: `measure`, then `program_all`."""
    return program_all(measure(model, batches, rows, cols, margin), device)


class Chips:
    """`count` chips programmed with one layer's `TileProgram` on `device`: the random draws of each cell
    (programming noise, drift exponent, faults) are made once; `weights(t)` gives the effective tiles at t."""

    def __init__(self, tiles: TileProgram, device: DeviceConfig, count: int, generator: torch.Generator):
        self.tiles, self.device = tiles, device
        shape = (count, 2, *tiles.g_plus.shape)  # chip, G+/G−, H, T, R, K

        def draw():
            return torch.randn(shape, generator=generator, dtype=torch.float64)

        self.z, nu = draw(), draw()
        self.nu = (device.drift_nu + device.drift_nu_std * nu).clamp_min(0)
        fault = torch.rand(shape, generator=generator, dtype=torch.float64)
        self.stuck_off, self.stuck_on = fault < device.stuck_off, (fault >= device.stuck_off) & (
            fault < device.stuck_off + device.stuck_on)
        H, T, R, K = tiles.g_plus.shape
        along_row = torch.arange(2 * K, dtype=torch.float64).view(K, 2) / max(2 * K - 1, 1)  # physical column
        along_col = (R - 1 - torch.arange(R, dtype=torch.float64)) / max(R - 1, 1)  # rows from the ADC
        self.distance = ((along_row.T[:, None, :] + along_col[None, :, None]) / 2)  # (2, R, K)

    def _sigma(self, g: torch.Tensor, t: float) -> torch.Tensor:
        """Programming-noise std at t: the device's polynomials interpolated in log t."""
        times = sorted(self.device.prog_noise)
        g_rel = g / self.device.g_max

        def at(key):
            return self.device.g_max * sum(c * g_rel ** i for i, c in enumerate(self.device.prog_noise[key]))

        if t <= times[0] or len(times) == 1:
            return at(times[0]).clamp_min(0)
        if t >= times[-1]:
            return at(times[-1]).clamp_min(0)
        hi = next(i for i, k in enumerate(times) if k >= t)
        lo_t, hi_t = times[hi - 1], times[hi]
        w = (math.log(t) - math.log(lo_t)) / (math.log(hi_t) - math.log(lo_t))
        return ((1 - w) * at(lo_t) + w * at(hi_t)).clamp_min(0)

    def conductances(self, t: float) -> torch.Tensor:
        """(chip, G+/G−, H, T, R, K) in siemens at t seconds after programming."""
        d = self.device
        target = torch.stack([self.tiles.g_plus, self.tiles.g_minus]).to(torch.float64)
        g = (target + self._sigma(target, t) * self.z).clamp_min(0)
        g = g * (max(t, d.drift_t0) / d.drift_t0) ** (-self.nu)
        g = torch.where(self.stuck_off, d.g_min, torch.where(self.stuck_on, d.g_max, g))
        g = g * (1 - d.ir_drop * self.distance[:, None, None])
        return g * self.tiles.present

    def weights(self, t: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(effective weights (C, H, T, R, K) in signal units per DAC unit, read-noise std per unit (C, H, T, K)):
        (G+ − G−)·gain, times the global drift compensation Σ|ΔG(min(t, t0))| / Σ|ΔG(t)| of each tile."""
        def differential(time):
            g = self.conductances(time)
            return g[:, 0] - g[:, 1]

        delta = differential(t)
        reference = differential(min(t, self.device.drift_t0)) if t > self.device.drift_t0 else delta
        compensation = reference.abs().sum((-2, -1)) / delta.abs().sum((-2, -1)).clamp_min(1e-30)
        gain = self.tiles.gain.to(delta) * compensation[..., None]
        return delta * gain[..., None, :], self.device.read_noise * self.device.g_max * gain


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


def tile_step(x, u_t, u_prev, w, cells, read_std, rows, cols, dac_bits: int | None, adc_bits: int | None):
    """One read of every tile in slot form: the same currents as the dense tile product, without its empty cells.

    x (C, B, H, T, m, 2) the digitised state, u_t and u_prev (C, B, H); w and cells (number of physical cells per
    weight) in `slot_form` with leading (C, 1, H, T) and (1, 1, H, T); read_std (C, 1, H, T, K) or None; rows
    (H, T, R) and cols (H, T, K) the converters' full scales. Returns (next state, y_{t−1} per tile (C, B, H, T))."""
    m = x.shape[-2]
    v_u = convert(u_t[..., None] / rows[..., 0], dac_bits, 1.0)[..., None, None]  # (C, B, H, T, 1, 1)
    v_prev = convert(u_prev[..., None] / rows[..., 1], dac_bits, 1.0)
    v_x = convert(x / rows[..., FIXED_ROWS:].unflatten(-1, (m, 2)), dac_bits, 1.0)
    v_re, v_im = v_x[..., :1], v_x[..., 1:]
    out_x = v_u * w["input"] + v_re * w["block"][..., 0, :] + v_im * w["block"][..., 1, :]
    out_y = (v_x * w["out"]).sum((-2, -1)) + v_prev * w["skip"]
    if read_std is not None:  # std of the column current: read_noise·g_max·gain·√(Σ v² over the column's cells)
        spread_x = (v_u ** 2 * cells["input"] + v_re ** 2 * cells["block"][..., 0, :]
                    + v_im ** 2 * cells["block"][..., 1, :]).sqrt()
        spread_y = ((v_x ** 2 * cells["out"]).sum((-2, -1)) + v_prev ** 2 * cells["skip"]).sqrt()
        out_x = out_x + torch.randn_like(out_x) * spread_x * read_std[..., :2 * m].unflatten(-1, (m, 2))
        out_y = out_y + torch.randn_like(out_y) * spread_y * read_std[..., -1]
    state = convert(out_x, adc_bits, cols[..., :2 * m].unflatten(-1, (m, 2)))
    return state, convert(out_y, adc_bits, cols[..., -1])


class CrossbarSSM(nn.Module):
    """Stands in for one S4D layer: its recurrence on simulated tiles of C chips. Inputs (C·B, H, L)."""

    def __init__(self, tiles: TileProgram, weights: torch.Tensor, read_std: torch.Tensor,
                 dac_bits: int | None, adc_bits: int | None):
        super().__init__()
        for name, value in slot_form(weights).items():
            self.register_buffer(f"w_{name}", value.unsqueeze(1))
        for name, value in slot_form(2 * tiles.present.to(weights.dtype)).items():
            self.register_buffer(f"cells_{name}", value[None, None])
        self.read_noise = bool(read_std.any())
        self.register_buffer("read_std", read_std.unsqueeze(1))
        self.register_buffer("row_scale", tiles.row_scale)
        self.register_buffer("col_scale", tiles.col_scale)
        self.dac_bits, self.adc_bits = dac_bits, adc_bits

    def _slots(self, prefix: str) -> dict[str, torch.Tensor]:
        return {name: getattr(self, f"{prefix}_{name}") for name in ("input", "block", "out", "skip")}

    def forward(self, u: torch.Tensor, mode: str = "recurrent") -> torch.Tensor:
        w, cells = self._slots("w"), self._slots("cells")
        chips, _, H, T, m, _ = w["input"].shape
        u = u.reshape(chips, -1, *u.shape[1:])  # (C, B, H, L)
        read_std = self.read_std if self.read_noise else None
        if u.is_cuda:
            from pipeline.analog.tile_kernel import scan  # Triton: GPUs only
            y = scan(u, w, cells, read_std, self.row_scale, self.col_scale, self.dac_bits, self.adc_bits)
        else:
            y = run_steps(u, T, m, functools.partial(
                tile_step, w=w, cells=cells, read_std=read_std, rows=self.row_scale, cols=self.col_scale,
                dac_bits=self.dac_bits, adc_bits=self.adc_bits))
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
    return _with_layers(model, layers).to(device=param.device, dtype=param.dtype)


@torch.no_grad()
def chip_accuracies(model: S4DClassifier, x: torch.Tensor, y: torch.Tensor, chips: int,
                    batch_size: int = 256) -> torch.Tensor:
    """Accuracy of each chip of a `simulated` model on (x, y); `batch_size` counts sequences × chips."""
    per_batch = max(1, batch_size // chips)
    param = next(model.parameters())
    correct = torch.zeros(chips)
    for start in range(0, len(x), per_batch):
        xb, yb = x[start:start + per_batch].to(param.device), y[start:start + per_batch].to(param.device)
        logits = model(xb.repeat(chips, 1, 1)).view(chips, len(xb), -1)
        correct += (logits.argmax(-1) == yb).sum(-1).cpu()
    return correct / len(x)
