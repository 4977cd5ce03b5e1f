"""Stage `prune`: prune the QAT model on the validation set, recover → its checkpoint and metrics."""
from pathlib import Path

from pipeline import stage, tracking
from pipeline.config import Config
from pipeline.steps.prune import prune_and_recover
from pipeline.training import ClassifierModule

WORKDIR = Path("runs/prune")


def main(config: Config, data: Path, model: Path, out: Path, metrics: Path) -> None:
    with tracking.stage_run(config, "prune") as run:
        module = ClassifierModule.load_from_checkpoint(model, map_location="cpu")
        pruned, values = prune_and_recover(module, config, data, WORKDIR, sink=run.log_metrics)
        stage.publish(run, pruned, values, data, WORKDIR, out, metrics)
        print(f"prune ({config.prune.criterion}): structured {values['pruned/structured_frac']:.1%}, unstructured "
              f"{values['pruned/unstructured_frac']:.1%}, mixing {values['pruned/mixing_frac']:.1%}; "
              f"test/acc {values['test/acc']:.4f}")


if __name__ == "__main__":
    stage.run(main, "data", "model", "out", "metrics")
