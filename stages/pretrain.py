"""Stage `pretrain`: float training of the S4D classifier → models/pretrain.ckpt, metrics/pretrain.json."""
from pathlib import Path

from pipeline import stage, tracking
from pipeline.config import Config
from pipeline.training import fit_classifier

DATA, WORKDIR, OUT = Path("data/prepared"), Path("runs/pretrain"), Path("models/pretrain.ckpt")


def main(config: Config) -> None:
    with tracking.stage_run(config, "pretrain") as run:
        _, metrics = fit_classifier(config, DATA, WORKDIR, sink=run.log_metrics)
        stage.publish(run, "pretrain", metrics, WORKDIR, OUT)
        print(f"pretrain: val/acc {metrics['val/acc']:.4f}, test/acc {metrics['test/acc']:.4f}, "
              f"{metrics['params']} parameters, {metrics['train/seconds']:.1f} s")


if __name__ == "__main__":
    stage.run(main)
