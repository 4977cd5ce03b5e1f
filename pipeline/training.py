"""Lightning training of the S4D classifier: the LightningModule, the per-epoch report and the Trainer factory."""
from __future__ import annotations

import functools
import hashlib
import itertools
import json
import logging
import math
import shutil
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from pipeline.analog.noise import attach_noise, set_noise
from pipeline.config import Config, Schedule
from pipeline.cuda_graphs import capture
from pipeline.data import read_meta
from pipeline.data.datamodule import PreparedDataModule
from pipeline.model import S4DClassifier
from pipeline.progress import show_progress
from pipeline.prune.masks import attach_masks
from pipeline.quant import calibrate, quantize, quantizers

MetricsSink = Callable[[dict, int], None]
# Lightning 2.6 with torch ≥ 2.10 warns about its own use of a deprecated torch API on every fit; nothing to act on.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")  # see resume_point
SPLITS = ("train", "val", "test")
CALIBRATION_BATCHES = 4
BEST_AND_LAST = (("best", "val/acc"), ("last", None))  # (file name, monitored metric) of the two checkpoints


class ClassifierModule(L.LightningModule):
    """S4D classifier trained with cross-entropy; AdamW in groups (SSM: lr ≤ 1e-3, no weight decay; learned
    quantizer clips: no weight decay) and a per-step schedule: linear warm-up, then cosine decay to zero.

    `quant` (a `QuantConfig` as a dict) attaches quantizers, `pruned` pruning masks (after them), `noise`
    ({"sigma", "mixing"}) analog weight noise, on while training and off for validation and test; the `deploy`
    target is validated and tested in recurrent mode, the hardware-faithful one. Signal quantizers that have seen
    no data are calibrated on a few training batches before validation and test. With `use_cuda_graphs()` the
    training forward and backward are replayed from CUDA graphs captured at the first training step."""

    def __init__(self, d_in: int, n_classes: int, model: dict, optim: dict, quant: dict | None = None,
                 pruned: bool = False, noise: dict | None = None):
        super().__init__()
        self._graphs = self._graphed = None  # (wanted, captured (input shape, callable)): see use_cuda_graphs
        self._compile = False
        self.save_hyperparameters()
        self.model = S4DClassifier(d_in, n_classes, **model)
        self.accuracy = torch.nn.ModuleDict(
            {f"acc_{s}": MulticlassAccuracy(n_classes, average="micro", validate_args=False) for s in SPLITS})
        self.mean_loss = torch.nn.ModuleDict({f"loss_{s}": MeanMetric(nan_strategy="disable") for s in SPLITS})
        self.train_mode = self.eval_mode = "conv"
        if quant is not None:
            quantize(self.model, quant["bits"], quant["target"], quant["scale"], quant.get("clip"))
            self.train_mode = quant.get("train_mode", "conv")
            self.eval_mode = "recurrent" if quant["target"] == "deploy" else "conv"
        if pruned:
            attach_masks(self.model)
        self.train_sigma = 0.0
        if noise is not None:
            attach_noise(self.model, 0.0, noise.get("mixing", False))
            self.train_sigma = noise["sigma"]

    def forward(self, x: torch.Tensor, mode: str = "conv") -> torch.Tensor:
        return self.model(x, mode)

    def use_cuda_graphs(self, enabled: bool = True, compile: bool = False) -> None:
        """Capture the training pass (compiled first with `compile`) as CUDA graphs at the next training step, if
        it runs on one GPU in 32 or 64 bits (autocast and DDP's gradient hooks do not mix with capture); otherwise
        train eagerly."""
        self._graphs, self._compile, self._graphed = enabled, compile, None

    def _train_forward(self, x: torch.Tensor) -> torch.Tensor:
        usable = (self._graphs and x.is_cuda and self.trainer.world_size == 1
                  and self.trainer.precision in ("32-true", "64-true"))
        if not usable:
            return self(x, self.train_mode)
        if self._graphed is None:
            self._graphed = (x.shape, capture(self.model, self.train_mode, x, self._compile))
        shape, graphed = self._graphed
        return graphed(x) if x.shape == shape else self(x, self.train_mode)

    def _step(self, batch, split: str) -> torch.Tensor:
        x, y = batch
        logits = self._train_forward(x) if split == "train" else self(x, self.eval_mode)
        losses = F.cross_entropy(logits, y, reduction="none")
        self.accuracy[f"acc_{split}"].update(logits, y)
        # per-sample losses, no weights: a Python number as weight would be copied to the GPU, a host sync per step
        self.mean_loss[f"loss_{split}"].update(losses.detach())
        return losses.mean()

    def _log_epoch(self, split: str) -> None:
        """The epoch's mean loss and accuracy (over all processes) as `split`/loss and `split`/acc. Accumulated on
        the device each step and logged once: a `self.log` per step costs more host time than a replayed step."""
        for name, metric in ((f"{split}/loss", self.mean_loss[f"loss_{split}"]),
                             (f"{split}/acc", self.accuracy[f"acc_{split}"])):
            self.log(name, metric.compute(), on_step=False, on_epoch=True, sync_dist=True)
            metric.reset()

    def _calibrate(self) -> None:
        loader = self.trainer.datamodule.calibration_dataloader()
        batches = (x.to(self.device) for x, _ in itertools.islice(loader, CALIBRATION_BATCHES))
        calibrate(self.model, batches, self.eval_mode)

    def on_train_epoch_start(self) -> None:
        set_noise(self.model, self.train_sigma)

    def on_validation_start(self) -> None:
        set_noise(self.model, 0.0)
        self._calibrate()

    def on_test_start(self) -> None:
        set_noise(self.model, 0.0)
        self._calibrate()

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if batch_idx + 1 == self.trainer.num_training_batches:  # before validation and the epoch-end callbacks
            self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def configure_optimizers(self):
        opt = self.hparams.optim
        ssm = {id(p) for p in self.model.ssm_parameters()}
        clips = {id(p) for q in quantizers(self.model) for p in q.parameters()}
        rest = [p for p in self.parameters() if id(p) not in ssm | clips]
        groups = [
            {"params": [p for p in self.parameters() if id(p) in ssm], "lr": opt["ssm_lr"], "weight_decay": 0.0},
            {"params": rest, "lr": opt["lr"], "weight_decay": opt["weight_decay"]},
            {"params": [p for p in self.parameters() if id(p) in clips], "lr": opt["lr"], "weight_decay": 0.0},
        ]
        optimizer = torch.optim.AdamW([g for g in groups if g["params"]], fused=self.device.type == "cuda")
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = min(total - 1, opt["warmup_epochs"] * total // max(1, self.trainer.max_epochs))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class EpochReport(L.Callback):
    """After each epoch: training throughput, then one summary line (when no progress bar) and the metrics
    passed to `sink(metrics, epoch)` (e.g. the MLflow run)."""

    def __init__(self, sink: MetricsSink | None = None, print_lines: bool = True):
        self.sink, self.print_lines = sink, print_lines
        self.history: list[dict] = []

    def on_train_epoch_start(self, trainer, module):
        self._start, self._samples = time.perf_counter(), 0

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self._samples += len(batch[1])

    def on_validation_epoch_start(self, trainer, module):
        if not trainer.sanity_checking and trainer.training:
            self._seconds = time.perf_counter() - self._start

    def on_train_epoch_end(self, trainer, module):
        seconds = getattr(self, "_seconds", time.perf_counter() - self._start)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if "/" in k}
        metrics["train/epoch_seconds"] = seconds
        metrics["train/samples_per_s"] = self._samples * trainer.world_size / max(seconds, 1e-9)
        metrics["train/lr"] = trainer.optimizers[0].param_groups[-1]["lr"]
        epoch = trainer.current_epoch
        self.history.append({"epoch": epoch, **metrics})
        if trainer.is_global_zero:
            if self.print_lines:
                shown = " ".join(f"{k}={metrics[k]:.4g}" for k in sorted(metrics) if k != "train/lr")
                print(f"epoch {epoch + 1}/{trainer.max_epochs} {shown}", flush=True)
            if self.sink is not None:
                self.sink(metrics, epoch)

    def state_dict(self) -> dict:
        return {"history": self.history}

    def load_state_dict(self, state: dict) -> None:
        self.history = state["history"]


class DivergenceCheck(L.Callback):
    """Stops training at the end of an epoch whose mean training loss is not finite, before it is checkpointed
    (checking every step would stall the GPU on a host sync)."""

    def on_train_epoch_end(self, trainer, module):
        loss = trainer.callback_metrics.get("train/loss")
        if loss is not None and not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss is {float(loss)} in epoch {trainer.current_epoch + 1}: the run diverged; "
                "lower the stage's lr, set its grad_clip, or check the data for NaN")


class EpochSeed(L.Callback):
    """Seeds torch's generator at each epoch's start from (seed, epoch): dropout and training noise, like the
    batches, do not depend on whether the run was interrupted and resumed."""

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_epoch_start(self, trainer, module):
        torch.manual_seed(self.seed + trainer.current_epoch)


def quiet_lightning() -> None:
    """No banners (accelerator lines), tips or advertisements from Lightning: the stages print their own lines."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)


def make_trainer(config: Config, epochs: int, workdir: str | Path, sink: MetricsSink | None = None,
                 grad_clip: float | None = None, callbacks: Sequence[L.Callback] = ()) -> L.Trainer:
    """A Trainer that keeps the best-validation and the last checkpoint in `workdir` (best.ckpt, last.ckpt), both
    checked at the end of each training epoch; last.ckpt is rewritten every epoch."""
    interactive = show_progress()
    quiet_lightning()
    best, last = (L.pytorch.callbacks.ModelCheckpoint(
        dirpath=str(workdir), filename=name, monitor=monitor, mode="max", save_top_k=1,
        save_on_train_epoch_end=True, enable_version_counter=False) for name, monitor in BEST_AND_LAST)
    train = config.train
    on_gpus = train.devices > 1 and train.accelerator != "cpu" and torch.cuda.is_available()
    return L.Trainer(
        max_epochs=epochs, accelerator=train.accelerator, devices=train.devices, strategy=train.strategy,
        sync_batchnorm=on_gpus,  # batch statistics over the global batch; torch syncs them on GPUs only
        precision=train.precision, deterministic=train.deterministic, gradient_clip_val=grad_clip, logger=False,
        callbacks=[DivergenceCheck(), best, last, EpochReport(sink, print_lines=not interactive),
                   EpochSeed(config.seed),
                   *callbacks],
        enable_progress_bar=interactive, enable_model_summary=False, num_sanity_val_steps=0,
    )


def for_short_runs(config: Config) -> Config:
    """`config` for many short trainings (sweep candidates): no torch.compile, whose 10–30 s per run cost more
    than a one-epoch run gains from it."""
    return config.model_copy(update={"train": config.train.model_copy(update={"compile": False})})


def build_module(config: Config, meta: dict, schedule: Schedule, quant: dict | None = None) -> ClassifierModule:
    return ClassifierModule(meta["d_in"], meta["n_classes"], config.model.model_dump(),
                            schedule.model_dump(include=set(Schedule.model_fields)), quant)


def load_weights(module: ClassifierModule, source: ClassifierModule) -> ClassifierModule:
    """Copy `source`'s weights into `module` (e.g. float → quantized); only tap state may be missing."""
    missing, unexpected = module.load_state_dict(source.state_dict(), strict=False)
    extra = [k for k in missing if ".taps." not in k] + list(unexpected)
    if extra:
        raise ValueError(f"checkpoints do not match: {extra[:5]}")
    return module


@functools.cache
def code_digest() -> str:
    """Hex digest of the pipeline package's Python sources."""
    root = Path(__file__).resolve().parent
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
        if len(_callback_state(last, EpochReport.__name__)["history"]) < epochs:
            return last
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    recorded.write_text(key)
    return None


def _callback_state(checkpoint: str | Path, prefix: str) -> dict:
    states = torch.load(checkpoint, map_location="cpu", weights_only=False)["callbacks"]
    return next(state for name, state in states.items() if name.startswith(prefix))


def fit(module: ClassifierModule, config: Config, schedule: Schedule, data_dir: str | Path,
        workdir: str | Path, sink: MetricsSink | None = None,
        callbacks: Sequence[L.Callback] = ()) -> tuple[ClassifierModule, dict]:
    """Train `module`, reload its best-validation checkpoint and test it. Returns (best module, metrics).

    Re-running the same training (same `run_key`) in the same `workdir` resumes from its last checkpoint; with
    per-epoch batches and seeds, the result equals that of an uninterrupted run."""
    L.seed_everything(config.seed, workers=True, verbose=False)
    resume = resume_point(workdir, run_key(module, config, schedule), schedule.epochs)
    if resume is not None:
        print(f"resuming from {resume} (same params and starting weights)", flush=True)
    data = PreparedDataModule(data_dir, config.train.batch_size, config.train.num_workers, config.seed)
    trainer = make_trainer(config, schedule.epochs, workdir, sink, schedule.grad_clip, callbacks)
    module.use_cuda_graphs(config.train.cuda_graphs, config.train.compile)
    start = time.perf_counter()
    trainer.fit(module, datamodule=data, ckpt_path=resume)
    seconds = time.perf_counter() - start
    best = trainer.checkpoint_callback.best_model_path  # also known after DDP's spawned processes are gone
    tested = trainer.test(module, datamodule=data, ckpt_path=best, verbose=False)[0]
    history = _callback_state(Path(workdir) / "last.ckpt", EpochReport.__name__)["history"]
    metrics = {
        "val/acc": float(_callback_state(best, "ModelCheckpoint{'monitor': 'val/acc'")["best_model_score"]),
        "test/acc": tested["test/acc"],
        "test/loss": tested["test/loss"],
        "params": sum(p.numel() for p in module.parameters() if p.requires_grad),
        "train/seconds": seconds,
        "train/epochs": len(history),
        "train/samples_per_s": statistics.median(h["train/samples_per_s"] for h in history),
    }
    return ClassifierModule.load_from_checkpoint(best, map_location="cpu"), metrics


def fit_classifier(config: Config, data_dir: str | Path, workdir: str | Path, sink: MetricsSink | None = None,
                   callbacks: Sequence[L.Callback] = ()) -> tuple[ClassifierModule, dict]:
    """Float pretraining of a fresh classifier."""
    L.seed_everything(config.seed, workers=True, verbose=False)
    module = build_module(config, read_meta(data_dir), config.pretrain)
    return fit(module, config, config.pretrain, data_dir, workdir, sink, callbacks)


def evaluate(module: ClassifierModule, config: Config, data_dir: str | Path) -> dict:
    """{"val/acc", "val/loss", "test/acc", "test/loss"} of `module` as it is, in its evaluation mode."""
    data = PreparedDataModule(data_dir, config.train.batch_size, config.train.num_workers, config.seed)
    quiet_lightning()
    trainer = L.Trainer(accelerator=config.train.accelerator, devices=1, precision=config.train.precision,
                        logger=False, enable_progress_bar=False, enable_model_summary=False)
    return {**trainer.validate(module, datamodule=data, verbose=False)[0],
            **trainer.test(module, datamodule=data, verbose=False)[0]}
