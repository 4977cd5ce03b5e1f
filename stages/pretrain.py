"""Stage `pretrain`: float training of the S4D classifier → its checkpoint and metrics."""
from pathlib import Path

from pipeline import stage, tracking
from pipeline.config import Config
from pipeline.training import fit_classifier

WORKDIR = Path("runs/pretrain")


def main(config: Config, data: Path, out: Path, metrics: Path) -> None:
    with tracking.stage_run(config, "pretrain") as run:
        model, values = fit_classifier(config, data, WORKDIR, sink=run.log_metrics)
        stage.publish(run, model, values, data, WORKDIR, out, metrics)
        print(f"pretrain: val/acc {values['val/acc']:.4f}, test/acc {values['test/acc']:.4f}, "
              f"{values['params']} parameters, {values['train/seconds']:.1f} s")


if __name__ == "__main__":
    stage.run(main, "data", "out", "metrics")
