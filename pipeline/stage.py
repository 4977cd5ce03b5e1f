"""Plumbing shared by the stage scripts: params, metrics files, and clean exits on bad input."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Callable

from pipeline.config import Config, ConfigError, load
from pipeline.data.common import DataError

METRICS_DIR = Path("metrics")


def write_metrics(stage: str, metrics: dict, folder: Path = METRICS_DIR) -> Path:
    """metrics/<stage>.json, keys sorted, for `dvc metrics show/diff`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stage}.json"
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return path


def publish(run, stage: str, metrics: dict, workdir: Path, out: Path) -> None:
    """Copy the best checkpoint of `workdir` to `out`; write metrics/<stage>.json; log both and the metrics."""
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(workdir / "best.ckpt", out)
    run.log_metrics(metrics, step=metrics.get("train/epochs"))
    run.log_artifact(out)
    run.log_artifact(write_metrics(stage, metrics))


def run(stage: Callable[[Config], None], params: str | Path = "params.yaml") -> None:
    """Load and validate the params, run the stage; bad input ends with its message and exit code 2, a diverged
    training (non-finite loss) with its message and exit code 1."""
    try:
        stage(load(params))
    except (ConfigError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except FloatingPointError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
