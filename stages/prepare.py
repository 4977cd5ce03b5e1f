"""Stage `prepare`: the data set named in params.yaml → data/prepared/ (DatasetDict + meta.json)."""
import shutil
from pathlib import Path

from pipeline import data, stage, tracking
from pipeline.config import Config

OUT = Path("data/prepared")


def main(config: Config) -> None:
    with tracking.stage_run(config, "prepare") as run:
        shutil.rmtree(OUT, ignore_errors=True)
        meta = data.prepare(config, OUT)
        metrics = {f"data/{split}_size": size for split, size in meta["splits"].items()}
        metrics |= {"data/seq_len": meta["seq_len"], "data/d_in": meta["d_in"], "data/n_classes": meta["n_classes"]}
        run.log_metrics(metrics)
        run.log_artifact(OUT / data.META)
        run.log_artifact(stage.write_metrics("prepare", metrics))
        print(f"prepared {meta['name']}: {meta['splits']}, {meta['seq_len']} steps × {meta['d_in']} channels")


if __name__ == "__main__":
    stage.run(main)
