"""Hardware-in-the-loop training: each S4D layer computed as its crossbar tiles compute it, differentiably.

In execution mode `chip` an S4D layer runs the simulator's arithmetic (simulator.py) on its own parameters:

    (Ā, B̄, C, D) → tile matrix (mapping.tile_matrix, the slots of the last calibration)
                 → conductances (mapping.program on the device; level rounding straight-through)
                 → one chip drawn from the device while training (device_model.Chips), at a time after
                   programming drawn per pass from `times` and shared by the model's layers; for test the
                   ideal device, for validation too or (`validation: drawn`) one fixed draw per batch
                 → the step loop with DACs and ADCs (tile_read; straight-through inside the full scale, zero
                   gradient where a converter clips), back-propagated through time: on GPUs one Triton kernel
                   per tile index forward and one backward (tile_kernel), elsewhere autograd through the loop.

Back-propagation through time follows the programmed target weights of the state-to-state block, not the drawn
chip's: a drawn mode just outside the unit circle, driven by inputs below one DAC step, leaves the quantized forward
pass bounded, but its straight-through gradient grows as |λ|^L (over L = 784 steps a 12-bit RRAM draw gave
gradients of 10^20–10^36 and NaN). The weights' gradients are the chip's own (the currents of this read); on the
ideal device the two are the same.

The slot assignment and the converter full scales are buffers, measured (calibration.measure) at the start of
every training epoch and whenever the layer has none, and stored in checkpoints: the crossbar evaluation reads
them instead of measuring again, so on the ideal device the simulator gives exactly the model's own outputs.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

from pipeline.analog.calibration import Measured, measure
from pipeline.analog.device_model import Chips
from pipeline.analog.devices import PRESETS, DeviceConfig
from pipeline.analog.mapping import Layout, check_mapping, live_widths, program, tile_matrix
from pipeline.analog.tile_read import reader, slot_form
from pipeline.model import S4DClassifier
from pipeline.model.s4d import S4D

VALIDATION_CHIPS = ("ideal", "drawn")


@dataclass(frozen=True)
class ChipInTheLoop:
    """The chip a model trains on: the device whose draws it trains under (`DeviceConfig` fields), the converters,
    the tile size and mapping (`mapping`, `row_gains`), the ranges' margin, the times after programming the
    draws are taken at, and the chips validation runs on (`validation`: `ideal`, the model's software accuracy;
    `drawn`, one chip of the device per validation batch, the same chips at every validation)."""

    device: dict
    dac_bits: int | None = 8
    adc_bits: int | None = 8
    tile_rows: int = 64
    tile_cols: int = 64
    mapping: str = "residual"
    range_margin: float = 1.1
    times: tuple[float, ...] = (1.0,)
    row_gains: str = "none"
    validation: str = "ideal"

    def __post_init__(self):
        check_mapping(self.mapping, self.row_gains)
        if self.validation not in VALIDATION_CHIPS:
            raise ValueError(f"validation = {self.validation!r}: allowed {VALIDATION_CHIPS}")
        object.__setattr__(self, "times", tuple(self.times))  # a stored list (JSON, YAML) as the tuple it was
        if not self.times or min(self.times) <= 0:
            raise ValueError(f"times = {self.times}: one or more times after programming, each > 0 s")
        DeviceConfig.model_validate(self.device)

    @classmethod
    def of(cls, value: ChipInTheLoop | dict | None) -> ChipInTheLoop | None:
        """`value` as a ChipInTheLoop; a dict is its stored form (checkpoint hyperparameters)."""
        return cls(**value) if isinstance(value, dict) else value

    def stored(self) -> dict:
        """Plain values (JSON and YAML give them back unchanged: `times` as a list)."""
        return {**asdict(self), "times": list(self.times)}

    def attach(self, model: S4DClassifier) -> None:
        """Give every S4D layer of `model` its tile arithmetic (uncalibrated until `calibrate_tiles`), sharing one
        clock: the first layer draws the time of each training pass's chip, the others read it."""
        clock = ProgrammingClock(self.times)
        for index, block in enumerate(model.blocks):
            block.ssm.chip = TileArithmetic(self, clock, draws_time=index == 0)


class ProgrammingClock:
    """The time after programming of the chip one training pass draws, shared by a model's layers: uniform over
    `times` from torch's global generator (with a single time, no draw: the generator's stream is untouched).
    `drawn` is set while passes outside training draw chips too (`drawn_chips`)."""

    def __init__(self, times: tuple[float, ...]):
        self.times, self.now, self.drawn = times, times[0], False

    def time(self, drawn: bool, draws: bool) -> float:
        """A `drawn` pass's time (drawn anew by the layer that `draws`); otherwise the first time."""
        if not drawn:
            return self.times[0]
        if draws and len(self.times) > 1:
            self.now = self.times[int(torch.randint(len(self.times), ()))]
        return self.now


class TileArithmetic(nn.Module):
    """The `chip` execution mode of one S4D layer: buffers `modes` (H, T, m), `row_scale` (H, T, R) and
    `col_scale` (H, T, K), empty until calibrated; their shapes follow the layer's live modes."""

    def __init__(self, spec: ChipInTheLoop, clock: ProgrammingClock, draws_time: bool):
        super().__init__()
        self.spec, self.device = spec, DeviceConfig.model_validate(spec.device)
        self.clock, self.draws_time = clock, draws_time
        self.register_buffer("modes", torch.full((0, 0, 0), -1, dtype=torch.long))
        self.register_buffer("row_scale", torch.zeros(0, 0, 0))
        self.register_buffer("col_scale", torch.zeros(0, 0, 0))
        self._widths = (None, None)  # (the `modes` tensor, its kernel slot widths)

    @property
    def calibrated(self) -> bool:
        return self.modes.numel() > 0

    def set_ranges(self, modes: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> None:
        on = self.row_scale.device
        self.modes, self.row_scale, self.col_scale = modes.to(on), rows.to(on), cols.to(on)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """A checkpoint's buffers have the shapes of its calibration: take them as they are."""
        for name in ("modes", "row_scale", "col_scale"):
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name], device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def widths(self) -> list[int]:
        """The kernel's slot width per tile index, from the calibrated slots (a slot without a mode holds no cell):
        read from the device once per calibration, not at every step."""
        if self._widths[0] is not self.modes:
            self._widths = (self.modes, live_widths(self.modes >= 0))
        return self._widths[1]

    def layout(self, ssm: S4D) -> Layout:
        """The tiles of `ssm`'s current (Ā, B̄, C, D) in the calibrated slots, differentiable."""
        weights, present = tile_matrix(*ssm.discrete(), self.modes, self.spec.mapping == "residual")
        return Layout(weights, present, self.modes, residual=self.spec.mapping == "residual",
                      row_gains=self.spec.row_gains)

    def forward(self, ssm: S4D, u: torch.Tensor) -> torch.Tensor:
        """y (B, H, L) of u (B, H, L): the tiles programmed on one chip (a draw of the training device while
        training, the ideal device otherwise), read step by step through the converters."""
        if not self.calibrated:
            raise RuntimeError("chip mode before calibration: run calibrate_tiles on a few training batches first")
        drawn = self.training or self.clock.drawn
        device = self.device if drawn else PRESETS["ideal"]
        tiles = self.layout(ssm)
        programmed = program(tiles, self.row_scale, self.col_scale, device.g_min, device.g_max, device.levels)
        generator = None if drawn else torch.Generator(u.device).manual_seed(0)
        weights, read_std = Chips(programmed, device, 1, generator).weights(self.clock.time(drawn, self.draws_time))
        w = {name: value.to(u.dtype).unsqueeze(1) for name, value in slot_form(weights).items()}
        cells = {name: value[None, None] for name, value in slot_form(programmed.read_cells().to(u.dtype)).items()}
        noise = read_std.to(u.dtype).unsqueeze(1) if device.read_noise > 0 else None
        jacobian = None
        if self.training:  # back through time along the programmed targets, not the drawn chip's errors
            jacobian = slot_form(programmed.per_dac_unit().detach().to(u.dtype))["block"][None, None]
        return reader(u, self.widths())(u.unsqueeze(0), w, cells, noise, self.row_scale, self.col_scale,
                                        self.spec.dac_bits, self.spec.adc_bits, tiles.residual, jacobian).squeeze(0)


def tile_layers(model: S4DClassifier) -> list[TileArithmetic]:
    return [block.ssm.chip for block in model.blocks if isinstance(getattr(block.ssm, "chip", None), TileArithmetic)]


@contextmanager
def drawn_chips(model: S4DClassifier, seed: int) -> Iterator[None]:
    """Passes of `model` outside training inside this block run on a chip drawn as in training (device errors,
    time after programming, read noise), from torch's generators seeded with `seed` and restored afterwards: the
    same seed, the same chip, and the training's random stream untouched."""
    layers = tile_layers(model)
    devices = [p.device for p in model.parameters() if p.is_cuda][:1]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for layer in layers:
            layer.clock.drawn = True
        try:
            yield
        finally:
            for layer in layers:
                layer.clock.drawn = False


@torch.no_grad()
def calibrate_tiles(model: S4DClassifier, batches) -> None:
    """Measure every layer's slots and converter ranges on `batches` (ideal tiles, as the crossbar evaluation
    measures them) and store them in its tile arithmetic."""
    layers = tile_layers(model)
    if not layers:
        return
    spec = layers[0].spec
    measured = measure(model, batches, spec.tile_rows, spec.tile_cols, spec.range_margin, spec.mapping,
                       spec.row_gains)
    for layer, (tiles, rows, cols) in zip(layers, measured):
        layer.set_ranges(tiles.modes, rows, cols)


@torch.no_grad()
def stored_ranges(model: S4DClassifier, tile_rows: int, tile_cols: int, mapping: str,
                  row_gains: str = "none") -> Measured | None:
    """The layouts and converter ranges a model trained in the loop carries (None if it has none), for evaluation
    on tiles of the size and mapping it trained on."""
    layers = tile_layers(model)
    if not layers or not all(layer.calibrated for layer in layers):
        return None
    spec = layers[0].spec
    trained = (spec.tile_rows, spec.tile_cols, spec.mapping, spec.row_gains)
    if trained != (tile_rows, tile_cols, mapping, row_gains):
        raise ValueError(f"evaluate tile_rows, tile_cols, mapping, row_gains = "
                         f"{(tile_rows, tile_cols, mapping, row_gains)}: the model trained in the loop on "
                         f"{trained}; evaluate it on those")
    measured = []
    for block, layer in zip(model.blocks, layers):
        tiles = layer.layout(block.ssm)
        measured.append((replace(tiles, weights=tiles.weights.cpu(), present=tiles.present.cpu(),
                                 modes=tiles.modes.cpu()),
                         layer.row_scale.cpu(), layer.col_scale.cpu()))
    return measured
