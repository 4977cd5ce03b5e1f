"""Stage `sweep_bits`: PTQ and QAT test accuracy per component and bit width → a metrics file and a plot."""
import shutil
from pathlib import Path

from pipeline import stage, tracking
from pipeline.config import Config
from pipeline.plots import plot_bit_sweep
from pipeline.steps.sweep_bits import sweep_bits
from pipeline.training import ClassifierModule

WORKDIR = Path("runs/sweep_bits")


def main(config: Config, data: Path, float_model: Path, metrics: Path, plot: Path) -> None:
    with tracking.stage_run(config, "sweep_bits") as run:
        float_module = ClassifierModule.load_from_checkpoint(float_model, map_location="cpu")
        results = sweep_bits(float_module, config, data, WORKDIR, log=run.log_metrics)
        shutil.rmtree(WORKDIR, ignore_errors=True)
        run.log_artifact(stage.write_metrics(metrics, results))
        run.log_artifact(plot_bit_sweep(results, plot))
        settings = sum(len(widths) for component, widths in results.items() if component != "float")
        print(f"sweep_bits: {settings} settings (each printed above) → {metrics}, {plot}")


if __name__ == "__main__":
    stage.run(main, "data", "float_model", "metrics", "plot")
