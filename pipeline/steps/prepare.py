"""Stage `prepare`: the data set named in params.yaml → the prepared folder (DatasetDict + meta.json), metrics."""
from __future__ import annotations

import shutil
from pathlib import Path

from pipeline import data, stage, tracking
from pipeline.config import Config


def run(config: Config, out: Path, metrics: Path) -> None:
    """The `prepare` stage: the data set named in params.yaml → the prepared folder (DatasetDict + meta.json),
    metrics."""
    with tracking.stage_run(config, "prepare") as tracked:
        shutil.rmtree(out, ignore_errors=True)
        meta = data.prepare(config, out)
        values = {f"data/{split}_size": size for split, size in meta["splits"].items()}
        values |= {"data/seq_len": meta["seq_len"], "data/d_in": meta["d_in"], "data/n_classes": meta["n_classes"]}
        tracked.log_metrics(values)
        tracked.log_artifact(out / data.META)
        tracked.log_artifact(stage.write_metrics(metrics, values))
        print(f"prepared {meta['name']}: {meta['splits']}, {meta['seq_len']} steps × {meta['d_in']} channels")
