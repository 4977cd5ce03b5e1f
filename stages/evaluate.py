"""Stage `evaluate`: the fine-tuned model on simulated crossbar chips (per device, over time) beside its software
accuracy; energy per inference vs digital baselines; the crossbar programs (one folder per device), metrics and
two plots."""
import shutil
from pathlib import Path

import torch

from pipeline import stage, tracking
from pipeline.analog import export
from pipeline.config import Config
from pipeline.data.datamodule import load_split
from pipeline.plots import plot_crossbar_accuracy, plot_energy
from pipeline.scoring import accuracy
from pipeline.steps.evaluate import crossbar_accuracy, energy_metrics, layout_metrics, range_batches
from pipeline.training import ClassifierModule


def main(config: Config, data: Path, model: Path, programs_dir: Path, metrics: Path, accuracy_plot: Path,
         energy_plot: Path) -> None:
    settings = config.evaluate
    on = "cuda" if config.train.accelerator != "cpu" and torch.cuda.is_available() else "cpu"
    with tracking.stage_run(config, "evaluate") as run:
        shutil.rmtree(programs_dir, ignore_errors=True)
        module = ClassifierModule.load_from_checkpoint(model, map_location="cpu")
        x, y = load_split(data, "test").tensors
        x, y = x[:settings.test_samples], y[:settings.test_samples]
        calibration = range_batches(load_split(data, "train").tensors[0], settings.batch_size)
        software = accuracy(module.model, x, y, module.eval_mode)
        curves, programs = crossbar_accuracy(module, x, y, calibration, settings, config.seed, on)
        first, start = settings.devices[0], next(iter(curves[settings.devices[0]]))
        values = {"software/acc": software, "test_samples": len(x), "chips": settings.chips,
                  **{f"crossbar/acc_{k}": v for k, v in curves[first][start].items()},
                  **layout_metrics(programs[first])}
        values |= {f"crossbar/{device}/{t}/acc_{k}": v
                   for device, curve in curves.items() for t, point in curve.items() for k, v in point.items()}
        energy, breakdown = energy_metrics(module, programs[first], x.shape[1], settings)
        values |= energy
        for device, device_programs in programs.items():
            for path in export.save(device_programs, programs_dir / device, device):
                run.log_artifact(path, f"crossbar/{device}")
        run.log_metrics(values)
        run.log_artifact(stage.write_metrics(metrics, values))
        run.log_artifact(plot_crossbar_accuracy(curves, software, accuracy_plot))
        run.log_artifact(plot_energy(breakdown, {"digital int8": energy["energy/digital_int8_pj"],
                                                 "digital fp32": energy["energy/digital_fp32_pj"]}, energy_plot))
        print(f"evaluate: software {software:.4f}; " + "; ".join(
            f"{d} " + ", ".join(f"{t} {p['mean']:.4f}±{p['std']:.4f}" for t, p in c.items()) for d, c in curves.items())
            + f"; {values['tiles']} tiles, {values['cells']} cells; {energy['energy/pj_per_inference'] / 1e3:.1f} nJ"
              f" per inference (int8 digital ÷{energy['energy/ratio_int8']:.1f}, "
              f"fp32 ÷{energy['energy/ratio_fp32']:.1f})")


if __name__ == "__main__":
    stage.run(main, "data", "model", "programs_dir", "metrics", "accuracy_plot", "energy_plot")
