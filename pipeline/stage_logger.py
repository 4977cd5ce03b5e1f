"""Lightning's MLflow logger bound to a stage's MLflow run (`tracking.StageRun.lightning_logger`)."""
from __future__ import annotations

import warnings

from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only


class StageLogger(MLFlowLogger):
    """Lightning's MLflow logger bound to a stage's run. The run stays open when training ends (`stage_run` closes
    it after the stage), and a store that fails mid-training costs the run's metrics, not the training."""

    @rank_zero_only
    def log_metrics(self, metrics, step: int | None = None) -> None:
        if getattr(self, "_failed", False):
            return
        try:
            super().log_metrics(metrics, step)
        except Exception as error:
            warnings.warn(f"MLflow logging failed ({error}); training goes on without it", stacklevel=2)
            self._failed = True

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        pass
