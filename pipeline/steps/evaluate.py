"""Crossbar evaluation of a trained classifier: accuracy of Monte Carlo chips at times after programming, per
device, and the energy per inference against digital baselines."""
from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Iterable
from pathlib import Path

import torch

from pipeline import stage, tracking
from pipeline.analog import export
from pipeline.analog.calibration import Measured, measure, program_all
from pipeline.analog.in_the_loop import stored_ranges
from pipeline.analog.mapping import TileProgram
from pipeline.analog.simulator import simulated
from pipeline.config import Config, EvaluateConfig
from pipeline.cost import energy
from pipeline.cost.proxies import widths
from pipeline.data.datamodule import load_split
from pipeline.model import S4DClassifier
from pipeline.plots import plot_crossbar_accuracy, plot_energy
from pipeline.scoring import accuracy, copy_accuracies, evaluating
from pipeline.training import CALIBRATION_BATCHES, ClassifierModule

UNITS = (("y", 365 * 86400), ("d", 86400), ("h", 3600), ("min", 60))


def duration(seconds: float) -> str:
    """A short label: 1s, 1h, 1d, 1y, 90min, 2.5s."""
    for unit, size in UNITS:
        if seconds >= size and (seconds / size).is_integer():
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def range_batches(train_x: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """The first CALIBRATION_BATCHES training batches of `batch_size` (`train.batch_size`), on which converter ranges
    are measured: those training calibrates quantizers and tiles on."""
    return list(train_x[:CALIBRATION_BATCHES * batch_size].split(batch_size))


def tile_ranges(model: S4DClassifier, calibration: list[torch.Tensor], settings: EvaluateConfig) -> Measured:
    """The tile layouts and converter ranges `model` is evaluated with: those it trained in the loop with, else
    measured on `calibration`."""
    return stored_ranges(model, settings.tile_rows, settings.tile_cols, settings.mapping, settings.row_gains) or \
        measure(model, calibration, settings.tile_rows, settings.tile_cols, settings.range_margin, settings.mapping,
                settings.row_gains)


@torch.no_grad()
def crossbar_accuracy(module: ClassifierModule, x: torch.Tensor, y: torch.Tensor, calibration: list[torch.Tensor],
                      settings: EvaluateConfig, seed: int = 0, on: str = "cpu"
                      ) -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, list[TileProgram]]]:
    """({device: {time label: {"mean", "std", "min"}}} over chips, {device: tile programs}); one line per device
    and time as each finishes. The model moves to `on`; its train/eval state is left as it was."""
    curves, programs = {}, {}
    with evaluating(module.model.to(on)) as model:
        measured = tile_ranges(model, calibration, settings)
        for name, device in settings.device_settings().items():
            programs[name] = program_all(measured, device)
            curves[name] = {}
            for t in settings.times:
                start = time.perf_counter()
                chips = simulated(model, programs[name], device, settings.chips, t, settings.dac_bits,
                                  settings.adc_bits, seed)
                torch.manual_seed(seed)  # read noise
                accs = copy_accuracies(chips, x, y, settings.chips, settings.batch_size).tolist()
                point = curves[name][duration(t)] = {"mean": statistics.fmean(accs), "std": statistics.pstdev(accs),
                                                     "min": min(accs)}
                print(f"crossbar {name} at {duration(t)}: {settings.chips} chips, accuracy {point['mean']:.4f} ± "
                      f"{point['std']:.4f} on {len(y)} samples ({time.perf_counter() - start:.1f} s)", flush=True)
    return curves, programs


def tile_counts(programs: Iterable[TileProgram]) -> list[energy.Tiles]:
    """Per layer: DAC rows and ADC columns in use, Σ(G+ + G−)/k² (k a row's attenuation: the read power of a
    cell is v²·G), tiles in use."""
    counts = []
    for p in programs:
        used = p.present.any(-1).any(-1)
        counts.append(energy.Tiles(rows=int(p.present.any(-1).sum()), cols=int(p.present.any(-2).sum()),
                                   conductance=float(((p.g_plus + p.g_minus) / p.row_gain[..., None] ** 2).sum()),
                                   tiles=int(used.sum())))
    return counts


def energy_metrics(module: ClassifierModule, programs: list[TileProgram], steps: int,
                   settings: EvaluateConfig) -> tuple[dict[str, float], dict[str, float]]:
    """(metrics energy/*, the analog breakdown in pJ) for one inference of `steps` time steps: the headline and its
    breakdown with `settings.input_encoding`, and the total and ratios to digital int8 and fp32 of each encoding."""
    h = module.hparams
    shape = energy_shape(h.d_in, h.n_classes, h.model, programs, steps)
    bits, counts = widths(module.bits), tile_counts(programs)
    fp32, int8 = sum(energy.digital(shape, None).values()), sum(energy.digital(shape, 8).values())
    metrics = {"energy/digital_fp32_pj": fp32, "energy/digital_int8_pj": int8}
    parts = {encoding: energy.analog(shape, counts, bits, settings.dac_bits, settings.adc_bits, settings.read_voltage,
                                     settings.read_time, programs[0].residual, encoding)
             for encoding in energy.ENCODINGS}
    for encoding, breakdown in parts.items():
        total = sum(breakdown.values())
        metrics |= {f"energy/{encoding}/pj_per_inference": total, f"energy/{encoding}/ratio_fp32": fp32 / total,
                    f"energy/{encoding}/ratio_int8": int8 / total}
    chosen = settings.input_encoding
    metrics |= {f"energy/{k}": metrics[f"energy/{chosen}/{k}"] for k in ("pj_per_inference", "ratio_fp32",
                                                                           "ratio_int8")}
    metrics |= {f"energy/analog/{k}_pj": v for k, v in parts[chosen].items()}
    return metrics, parts[chosen]


def energy_shape(d_in: int, classes: int, model: dict, programs: list[TileProgram], steps: int) -> energy.Shape:
    """The energy model's view of a classifier (`ModelConfig` fields in `model`) mapped as `programs`."""
    return energy.Shape(d_in=d_in, classes=classes, channels=model["d_model"], layers=len(programs),
                        mix_out=2 if model.get("mixing", "glu") == "glu" else 1, steps=steps,
                        live_modes=tuple(int((p.modes >= 0).sum()) for p in programs))


def layout_metrics(programs: list[TileProgram]) -> dict[str, int]:
    return {"tiles": sum(t.tiles for t in tile_counts(programs)),
            "cells": int(sum(2 * p.present.sum() for p in programs))}


@torch.no_grad()
def model_energy(module: ClassifierModule, calibration: list[torch.Tensor], steps: int,
                 settings: EvaluateConfig) -> float:
    """Energy per inference (pJ) of `module` mapped onto the chip of the first device in `settings`."""
    with evaluating(module.model) as model:
        measured = measure(model, calibration, settings.tile_rows, settings.tile_cols, settings.range_margin,
                           settings.mapping, settings.row_gains)
    device = next(iter(settings.device_settings().values()))
    return energy_metrics(module, program_all(measured, device), steps, settings)[0]["energy/pj_per_inference"]


def run(config: Config, data: Path, model: Path, programs_dir: Path, metrics: Path, accuracy_plot: Path,
         energy_plot: Path) -> None:
    """The `evaluate` stage: the fine-tuned model on simulated crossbar chips (per device, over time) beside its
    software accuracy; energy per inference vs digital baselines; the crossbar programs (one folder per device),
    metrics and two plots."""
    settings = config.evaluate
    on = "cuda" if config.train.accelerator != "cpu" and torch.cuda.is_available() else "cpu"
    with tracking.stage_run(config, "evaluate") as tracked:
        shutil.rmtree(programs_dir, ignore_errors=True)
        module = ClassifierModule.load(model)
        x, y = load_split(data, "test").tensors
        x, y = x[:settings.test_samples], y[:settings.test_samples]
        calibration = range_batches(load_split(data, "train").tensors[0], config.train.batch_size)
        software = accuracy(module.model, x, y, module.eval_mode)
        curves, programs = crossbar_accuracy(module, x, y, calibration, settings, config.seed, on)
        first, start = settings.devices[0], next(iter(curves[settings.devices[0]]))
        values = {"software/acc": software, "test_samples": len(x), "chips": settings.chips,
                  **({"software/digital_acc": accuracy(module.model, x, y, "recurrent")}
                     if module.eval_mode == "chip" else {}),
                  **{f"crossbar/acc_{k}": v for k, v in curves[first][start].items()},
                  **layout_metrics(programs[first])}
        values |= {f"crossbar/{device}/{t}/acc_{k}": v
                   for device, curve in curves.items() for t, point in curve.items() for k, v in point.items()}
        energy, breakdown = energy_metrics(module, programs[first], x.shape[1], settings)
        values |= energy
        for device, device_programs in programs.items():
            for path in export.save(device_programs, programs_dir / device, device):
                tracked.log_artifact(path, f"crossbar/{device}")
        tracked.log_metrics(values)
        tracked.log_artifact(stage.write_metrics(metrics, values))
        tracked.log_artifact(plot_crossbar_accuracy(curves, software, accuracy_plot))
        tracked.log_artifact(plot_energy(breakdown, {"digital int8": energy["energy/digital_int8_pj"],
                                                 "digital fp32": energy["energy/digital_fp32_pj"]}, energy_plot))
        print(f"evaluate: software {software:.4f}; " + "; ".join(
            f"{d} " + ", ".join(f"{t} {p['mean']:.4f}±{p['std']:.4f}" for t, p in c.items()) for d, c in curves.items())
            + f"; {values['tiles']} tiles, {values['cells']} cells; {energy['energy/pj_per_inference'] / 1e3:.1f} nJ"
              f" per inference (int8 digital ÷{energy['energy/ratio_int8']:.1f}, "
              f"fp32 ÷{energy['energy/ratio_fp32']:.1f})")
