"""The Trainer every stage uses, and training, reloading and testing a module with it."""
from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import Logger
from lightning.pytorch.strategies import DDPStrategy

from pipeline.config import Config, Schedule
from pipeline.data import read_meta
from pipeline.data.datamodule import PreparedDataModule
from pipeline.progress import show_progress
from pipeline.training.module import ClassifierModule, DivergenceCheck, EpochReport, EpochSeed, MatmulPrecision
from pipeline.training.resume import best_score, epochs_done, resume_point, run_key

IGNORED_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\)",  # Lightning 2.6 on torch ≥ 2.10, about its own use of a torch API
    r"Checkpoint directory .* exists and is not empty",  # resume_point keeps the folder on purpose
    r"The number of training batches .* is smaller than the logging interval",  # metrics are logged per epoch
)


@contextlib.contextmanager
def lightning_warnings_ignored():
    """Within the block only: Lightning's warnings that ask nothing of the user are not shown."""
    with warnings.catch_warnings():
        for message in IGNORED_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        yield
BEST_AND_LAST = (("best", "val/acc"), ("last", None))  # (file name, monitored metric) of the two checkpoints


class MemoryLogger(Logger):
    """A Lightning logger that keeps each epoch's metrics in memory: `epochs[i]` = {name: value} of epoch i (a
    test after training lands one past the last epoch)."""

    name, version = "memory", 0

    def __init__(self):
        super().__init__()
        self.epochs: dict[int, dict[str, float]] = {}

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        values = dict(metrics)
        epoch = int(values.pop("epoch", -1))
        self.epochs.setdefault(epoch, {}).update(values)

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass


def quiet_lightning() -> None:
    """No banners (accelerator lines), tips or advertisements from Lightning: the stages print their own lines."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)


def strategy(name: str) -> str | DDPStrategy:
    """Lightning's strategy for `train.strategy`: `ddp_spawn` is DDP in spawned processes whose parameters'
    gradients are views into DDP's all-reduce buckets (no copy into and out of the buckets at every step)."""
    return DDPStrategy(start_method="spawn", gradient_as_bucket_view=True) if name == "ddp_spawn" else name


def make_trainer(config: Config, epochs: int, workdir: str | Path, logger: Logger | None = None,
                 callbacks: Sequence[L.Callback] = ()) -> L.Trainer:
    """A Trainer that keeps the best-validation and the last checkpoint in `workdir` (best.ckpt, last.ckpt), both
    checked at the end of each training epoch; last.ckpt is rewritten every epoch. Each epoch's metrics go to
    `logger` (e.g. the stage's MLflow run). Gradient clipping is the module's (its `optim["grad_clip"]`)."""
    interactive = show_progress()
    quiet_lightning()
    best, last = (L.pytorch.callbacks.ModelCheckpoint(
        dirpath=str(workdir), filename=name, monitor=monitor, mode="max", save_top_k=1,
        save_on_train_epoch_end=True, enable_version_counter=False) for name, monitor in BEST_AND_LAST)
    train = config.train
    on_gpus = train.devices > 1 and train.accelerator != "cpu" and torch.cuda.is_available()
    return L.Trainer(
        max_epochs=epochs, accelerator=train.accelerator, devices=train.devices, strategy=strategy(train.strategy),
        sync_batchnorm=on_gpus,  # batch statistics over the global batch; torch syncs them on GPUs only
        precision=train.precision, deterministic=train.deterministic,
        logger=logger or False, callbacks=[DivergenceCheck(), best, last, EpochReport(print_lines=not interactive),
                   EpochSeed(config.seed), MatmulPrecision(train.matmul_precision),
                   *callbacks],
        enable_progress_bar=interactive, enable_model_summary=False, num_sanity_val_steps=0,
    )


def for_short_runs(config: Config) -> Config:
    """`config` for many short trainings (sweep candidates): no torch.compile, whose 10–30 s per run cost more
    than a one-epoch run gains from it."""
    return config.model_copy(update={"train": config.train.model_copy(update={"compile": False})})


def optim_params(schedule: Schedule) -> dict:
    """The optimizer part of a training section, as a module's `optim` hyperparameter."""
    return schedule.model_dump(include=set(Schedule.model_fields))


def build_module(config: Config, meta: dict, schedule: Schedule, quant: dict | None = None) -> ClassifierModule:
    return ClassifierModule(meta["d_in"], meta["n_classes"], config.model.model_dump(), optim_params(schedule), quant)


def fit(module: ClassifierModule, config: Config, schedule: Schedule, data_dir: str | Path,
        workdir: str | Path, logger: Logger | None = None,
        callbacks: Sequence[L.Callback] = ()) -> tuple[ClassifierModule, dict]:
    """Train `module`, reload its best-validation checkpoint and test it. Returns (best module, metrics). Every
    module trains in training mode, whatever state an earlier evaluation left it in (Lightning keeps the modes
    it finds).

    Re-running the same training (same `run_key`) in the same `workdir` resumes from its last checkpoint; with
    per-epoch batches and seeds, the result equals that of an uninterrupted run."""
    L.seed_everything(config.seed, workers=True, verbose=False)
    resume = resume_point(workdir, run_key(module, config, schedule), schedule.epochs)
    if resume is not None:
        print(f"resuming from {resume} (same params and starting weights)", flush=True)
    data = PreparedDataModule(data_dir, config.train.batch_size, config.train.num_workers, config.seed)
    trainer = make_trainer(config, schedule.epochs, workdir, logger, callbacks)
    module.use_cuda_graphs(config.train.cuda_graphs, config.train.compile)
    module.train()
    with lightning_warnings_ignored():
        start = time.perf_counter()
        trainer.fit(module, datamodule=data, ckpt_path=resume)
        seconds = time.perf_counter() - start
        rate = float(trainer.callback_metrics.get("train/samples_per_s", "nan"))  # the last epoch's
        best = trainer.checkpoint_callback.best_model_path  # also known after DDP's spawned processes are gone
        tested = trainer.test(module, datamodule=data, ckpt_path=best, verbose=False)[0]
    metrics = {
        "val/acc": best_score(best, "val/acc"),
        "test/acc": tested["test/acc"],
        "test/loss": tested["test/loss"],
        "params": sum(p.numel() for p in module.parameters() if p.requires_grad),
        "train/seconds": seconds,
        "train/epochs": epochs_done(Path(workdir) / "last.ckpt"),
        "train/samples_per_s": rate,
    }
    return ClassifierModule.load(best), metrics


def fit_classifier(config: Config, data_dir: str | Path, workdir: str | Path, logger: Logger | None = None,
                   callbacks: Sequence[L.Callback] = ()) -> tuple[ClassifierModule, dict]:
    """Float pretraining of a fresh classifier."""
    L.seed_everything(config.seed, workers=True, verbose=False)
    module = build_module(config, read_meta(data_dir), config.pretrain)
    return fit(module, config, config.pretrain, data_dir, workdir, logger, callbacks)


def evaluate(module: ClassifierModule, config: Config, data_dir: str | Path, validate: bool = True) -> dict:
    """{"val/acc", "val/loss", "test/acc", "test/loss"} of `module` as it is, in its evaluation mode; the test split's
    alone without `validate`."""
    data = PreparedDataModule(data_dir, config.train.batch_size, config.train.num_workers, config.seed)
    quiet_lightning()
    trainer = L.Trainer(accelerator=config.train.accelerator, devices=1, precision=config.train.precision,
                        logger=False, enable_progress_bar=False, enable_model_summary=False)
    with lightning_warnings_ignored():
        validated = trainer.validate(module, datamodule=data, verbose=False)[0] if validate else {}
        return {**validated, **trainer.test(module, datamodule=data, verbose=False)[0]}
