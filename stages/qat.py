"""Stage `qat`: PTQ baseline, then quantization-aware training from the float model → its checkpoint, metrics."""
from pathlib import Path

from pipeline import stage, tracking
from pipeline.config import Config
from pipeline.steps.qat import compare
from pipeline.training import ClassifierModule

WORKDIR = Path("runs/qat")


def main(config: Config, data: Path, float_model: Path, out: Path, metrics: Path) -> None:
    with tracking.stage_run(config, "qat") as run:
        float_module = ClassifierModule.load_from_checkpoint(float_model, map_location="cpu")
        trained, values = compare(float_module, config, data, WORKDIR, sink=run.log_metrics)
        stage.publish(run, trained, values, data, WORKDIR, out, metrics)
        print(f"qat ({config.qat.target}, bits {config.qat.bits}): test/acc float {values['float/test/acc']:.4f}"
              f", PTQ {values['ptq/test/acc']:.4f}, QAT {values['test/acc']:.4f}; "
              f"ACE ÷{values['cost/ace_reduction']:.1f}")


if __name__ == "__main__":
    stage.run(main, "data", "float_model", "out", "metrics")
