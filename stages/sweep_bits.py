"""Sweep `sweep_bits`: PTQ and QAT test accuracy per component and bit width → metrics/sweep_bits.json + plot.

Run with `dvc repro sweeps/dvc.yaml` (not part of the default pipeline)."""
import json
import shutil
from pathlib import Path

from pipeline import stage, tracking
from pipeline.config import Config
from pipeline.quant.sweep import sweep_bits
from pipeline.plots import plot_bit_sweep
from pipeline.training import ClassifierModule

DATA, PRETRAINED, WORKDIR = Path("data/prepared"), Path("models/pretrain.ckpt"), Path("runs/sweep_bits")
PLOT = Path("plots/sweep_bits.png")


def main(config: Config) -> None:
    with tracking.stage_run(config, "sweep_bits") as run:
        float_module = ClassifierModule.load_from_checkpoint(PRETRAINED, map_location="cpu")
        results = sweep_bits(float_module, config, DATA, WORKDIR, log=run.log_metrics)
        shutil.rmtree(WORKDIR, ignore_errors=True)
        path = stage.write_metrics("sweep_bits", results)
        run.log_artifact(path)
        run.log_artifact(plot_bit_sweep(results, PLOT))
        print(json.dumps(results))


if __name__ == "__main__":
    stage.run(main)
