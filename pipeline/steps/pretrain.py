"""Stage `pretrain`: float training of the S4D classifier → its checkpoint and metrics."""
from __future__ import annotations

from pathlib import Path

from pipeline import stage, tracking
from pipeline.config import Config
from pipeline.training import fit_classifier

WORKDIR = Path("runs/pretrain")


def run(config: Config, data: Path, out: Path, metrics: Path) -> None:
    """The `pretrain` stage: float training of the S4D classifier → its checkpoint and metrics."""
    with tracking.stage_run(config, "pretrain") as tracked:
        model, values = fit_classifier(config, data, WORKDIR, logger=tracked.lightning_logger())
        stage.publish(tracked, model, values, data, WORKDIR, out, metrics)
        print(f"pretrain: val/acc {values['val/acc']:.4f}, test/acc {values['test/acc']:.4f}, "
              f"{values['params']} parameters, {values['train/seconds']:.1f} s")
