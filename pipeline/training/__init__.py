"""Lightning training of the S4D classifier: the module and its callbacks (module.py), the Trainer and fit
(trainer.py), resuming interrupted runs (resume.py)."""
from pipeline.training.module import CALIBRATION_BATCHES, ClassifierModule, load_weights
from pipeline.training.resume import resume_point, run_key
from pipeline.training.trainer import (
    MemoryLogger,
    build_module,
    evaluate,
    fit,
    fit_classifier,
    for_short_runs,
    make_trainer,
    optim_params,
)

__all__ = ["CALIBRATION_BATCHES", "ClassifierModule", "MemoryLogger", "build_module", "evaluate", "fit",
           "fit_classifier", "for_short_runs", "load_weights", "make_trainer", "optim_params", "resume_point",
           "run_key"]
