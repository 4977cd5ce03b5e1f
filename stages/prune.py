"""Stage `prune`: prune the QAT model on the validation set, recover → models/prune.ckpt, metrics/prune.json."""
from pathlib import Path

from pipeline import stage, tracking
from pipeline.config import Config
from pipeline.prune.recover import prune_and_recover
from pipeline.training import ClassifierModule

DATA, QAT, WORKDIR, OUT = Path("data/prepared"), Path("models/qat.ckpt"), Path("runs/prune"), Path("models/prune.ckpt")


def main(config: Config) -> None:
    with tracking.stage_run(config, "prune") as run:
        module = ClassifierModule.load_from_checkpoint(QAT, map_location="cpu")
        _, metrics = prune_and_recover(module, config, DATA, WORKDIR, sink=run.log_metrics)
        stage.publish(run, "prune", metrics, WORKDIR, OUT)
        print(f"prune: structured {metrics['pruned/structured_frac']:.1%}, unstructured "
              f"{metrics['pruned/unstructured_frac']:.1%}, mixing {metrics['pruned/mixing_frac']:.1%}; "
              f"test/acc {metrics['test/acc']:.4f}")


if __name__ == "__main__":
    stage.run(main)
