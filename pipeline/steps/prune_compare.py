"""QS4D's comparison: the structured fraction prunable from the float and from the QAT model at the same
criterion (no recovery) → a metrics file. Run with `dvc repro sweeps/dvc.yaml:prune_compare`."""
from __future__ import annotations

import json
from pathlib import Path

from pipeline import stage, tracking
from pipeline.config import Config
from pipeline.data.datamodule import load_split
from pipeline.prune.search import prune
from pipeline.steps.prune import pruned_copy
from pipeline.training import ClassifierModule


def run(config: Config, data: Path, float_model: Path, qat_model: Path, metrics: Path) -> None:
    """The `prune_compare` stage: the structured fraction prunable from the float and from the QAT model at the same
    criterion (no recovery) → a metrics file."""
    x_val, y_val = load_split(data, config.prune.select_on).tensors
    settings = config.prune
    results = {"criterion": settings.criterion, "tolerance": settings.criterion_tolerance()}
    models = {"float": float_model, "qat": qat_model}
    with tracking.stage_run(config, "prune_compare") as tracked:
        for name, path in models.items():
            module = pruned_copy(ClassifierModule.load(path))
            search = prune(module.model, x_val, y_val, module.eval_mode, settings.criterion_tolerance(),
                           ("structured",), settings.criterion, settings.search, settings.chunks)
            total = sum(m.mode.keep.numel() for m in search["layers"])
            results[name] = {"structured_frac": search["removed"]["structured"] / total,
                             "val_acc_before": search["baseline_val_acc"], "val_acc_after": search["val_acc"]}
        tracked.log_metrics({f"{m}/{k}": v for m in models for k, v in results[m].items()})
        tracked.log_artifact(stage.write_metrics(metrics, results))
    print(json.dumps(results))
