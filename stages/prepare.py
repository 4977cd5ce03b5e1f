"""Stage `prepare`: the data set named in params.yaml → the prepared folder (DatasetDict + meta.json), metrics."""
import shutil
from pathlib import Path

from pipeline import data, stage, tracking
from pipeline.config import Config


def main(config: Config, out: Path, metrics: Path) -> None:
    with tracking.stage_run(config, "prepare") as run:
        shutil.rmtree(out, ignore_errors=True)
        meta = data.prepare(config, out)
        values = {f"data/{split}_size": size for split, size in meta["splits"].items()}
        values |= {"data/seq_len": meta["seq_len"], "data/d_in": meta["d_in"], "data/n_classes": meta["n_classes"]}
        run.log_metrics(values)
        run.log_artifact(out / data.META)
        run.log_artifact(stage.write_metrics(metrics, values))
        print(f"prepared {meta['name']}: {meta['splits']}, {meta['seq_len']} steps × {meta['d_in']} channels")


if __name__ == "__main__":
    stage.run(main, "out", "metrics")
