"""Resuming an interrupted training: the key of a run, where to resume from, what its checkpoints recorded."""
from __future__ import annotations

import functools
import hashlib
import json
import shutil
from pathlib import Path

import torch

from pipeline.config import Config, Schedule
from pipeline.training.module import ClassifierModule


@functools.cache
def code_digest() -> str:
    """Hex digest of the pipeline package's Python sources."""
    root = Path(__file__).resolve().parent.parent  # the pipeline package
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def run_key(module: ClassifierModule, config: Config, schedule: Schedule) -> str:
    """Hex digest of what a training run depends on: the pipeline's code, seed, data and train params, the
    schedule, the module's hyperparameters and its starting weights."""
    digest = hashlib.sha256(code_digest().encode())
    digest.update(json.dumps(
        {"seed": config.seed, "data": config.data.model_dump(mode="json"),
         "train": config.train.model_dump(mode="json"),
         "schedule": schedule.model_dump(mode="json"), "hparams": dict(module.hparams)},
        sort_keys=True, default=str).encode())
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def resume_point(workdir: str | Path, key: str, epochs: int) -> Path | None:
    """`workdir`/last.ckpt if it was written by an unfinished run (fewer than `epochs` epochs) with the same `key`,
    i.e. an interrupted run of the same training; otherwise an emptied `workdir` that records `key`, and None (a
    finished run is trained again: `dvc repro -f` retrains)."""
    workdir = Path(workdir)
    last, recorded = workdir / "last.ckpt", workdir / "run_key"
    if last.is_file() and recorded.is_file() and recorded.read_text() == key:
        if epochs_done(last) < epochs:
            return last
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    recorded.write_text(key)
    return None


def _callback_states(checkpoint: str | Path) -> dict[str, dict]:
    return torch.load(checkpoint, map_location="cpu", weights_only=False)["callbacks"]


def epochs_done(checkpoint: str | Path) -> int:
    """Training epochs completed when a checkpoint saved at the end of a training epoch was written."""
    return torch.load(checkpoint, map_location="cpu", weights_only=False)["epoch"] + 1


def best_score(checkpoint: str | Path, monitor: str) -> float:
    """The best value of `monitor` that the ModelCheckpoint watching it had seen when it saved `checkpoint`."""
    return float(next(state["best_model_score"] for state in _callback_states(checkpoint).values()
                      if state.get("monitor") == monitor))
