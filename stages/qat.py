"""Stage `qat`: PTQ baseline, then quantization-aware training from the float model → models/qat.ckpt."""
from pathlib import Path

from pipeline import stage, tracking
from pipeline.config import Config
from pipeline.quant.ptq import compare
from pipeline.training import ClassifierModule

DATA, PRETRAINED = Path("data/prepared"), Path("models/pretrain.ckpt")
WORKDIR, OUT = Path("runs/qat"), Path("models/qat.ckpt")


def main(config: Config) -> None:
    with tracking.stage_run(config, "qat") as run:
        float_module = ClassifierModule.load_from_checkpoint(PRETRAINED, map_location="cpu")
        _, metrics = compare(float_module, config, DATA, WORKDIR, sink=run.log_metrics)
        stage.publish(run, "qat", metrics, WORKDIR, OUT)
        print(f"qat ({config.qat.target}, bits {config.qat.bits}): test/acc float {metrics['float/test/acc']:.4f}"
              f", PTQ {metrics['ptq/test/acc']:.4f}, QAT {metrics['test/acc']:.4f}; "
              f"ACE ÷{metrics['cost/ace_reduction']:.1f}")


if __name__ == "__main__":
    stage.run(main)
