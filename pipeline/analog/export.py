"""Crossbar program files: what a chip must be programmed with, and the loader that rebuilds the tiles.

`program.npz` holds, per layer i, `layer{i}/g_plus` and `layer{i}/g_minus` (siemens, (H, T, R, K): channel,
tile, row, logical column; G+ goes to physical column 2k, G− to 2k + 1), `present` (the cells that exist),
`row_scale` and `col_scale` (DAC and ADC full scales, in signal units), `gain` (signal units per siemens × DAC
unit), `modes` (the S4D mode in each slot, −1 if empty) and `row_gain` (each row is driven at 1/row_gain of the
DAC's voltage; format 2, 1 everywhere in format-1 files). `program.json` describes the layout in words, and
says per layer whether the tiles hold Ā − I with the state added back digitally (`residual`).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from pipeline.analog.mapping import FIXED_ROWS, TileProgram

FORMAT = 2
READABLE = (1, 2)


def _labels(slots: int) -> tuple[list[str], list[str]]:
    state = [f"x[slot {j}].{part}" for j in range(slots) for part in ("re", "im")]
    return ["u[t]", "u[t-1]", *state], [*state, "y[t-1]"]


def save(programs: list[TileProgram], folder: str | Path, device: str) -> list[Path]:
    """Write program.npz and program.json into `folder`; returns both paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays, layers = {}, []
    for i, p in enumerate(programs):
        arrays |= {f"layer{i}/{name}": t.detach().cpu().numpy() for name, t in p.tensors().items()}
        H, T, R, K = p.g_plus.shape
        rows, cols = _labels((R - FIXED_ROWS) // 2)
        layers.append({
            "layer": i, "channels": H, "tiles_per_channel": T, "rows": rows,
            "columns": cols, "physical_columns": "logical column k → G+ at 2k, G− at 2k+1",
            "g_min_S": p.g_min, "g_max_S": p.g_max, "residual": p.residual,
            "tiles": [{"channel": h, "tile": t, "modes": [int(n) for n in p.modes[h, t] if n >= 0],
                       "cells": int(2 * p.present[h, t].sum())}
                      for h in range(H) for t in range(T) if bool(p.present[h, t].any())],
        })
    npz, description = folder / "program.npz", folder / "program.json"
    np.savez_compressed(npz, **arrays)
    description.write_text(json.dumps({"format": FORMAT, "device": device, "layers": layers}, indent=1) + "\n")
    return [npz, description]


def load(folder: str | Path) -> list[TileProgram]:
    """The tile programs written by `save`."""
    folder = Path(folder)
    meta = json.loads((folder / "program.json").read_text())
    if meta.get("format") not in READABLE:
        raise ValueError(f"{folder / 'program.json'}: format {meta.get('format')!r}, this loader reads {READABLE}")
    with np.load(folder / "program.npz") as arrays:
        def tensor(i, name):
            return torch.from_numpy(arrays[f"layer{i}/{name}"])

        def optional(i, name):
            return tensor(i, name) if f"layer{i}/{name}" in arrays.files else None

        return [TileProgram(**{name: tensor(layer["layer"], name) for name in
                               ("g_plus", "g_minus", "present", "row_scale", "col_scale", "gain", "modes")},
                            g_min=layer["g_min_S"], g_max=layer["g_max_S"], residual=layer.get("residual", False),
                            row_gain=optional(layer["layer"], "row_gain"))
                for layer in meta["layers"]]
