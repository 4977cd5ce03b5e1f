"""The LightningModule of the S4D classifier and the callbacks every training uses."""
from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch.optim.lr_scheduler import LRScheduler
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from pipeline.analog.in_the_loop import ChipInTheLoop, calibrate_tiles, drawn_chips, tile_layers
from pipeline.analog.noise import WeightNoise, set_noise
from pipeline.cuda_graphs import GraphedStep, capture
from pipeline.model import S4DClassifier
from pipeline.prune.masks import attach_masks
from pipeline.quant import Quantization, calibrate, quantizers

HELD_OUT = ("val", "test")
CALIBRATION_BATCHES = 4


class ClassifierModule(L.LightningModule):
    """S4D classifier trained with cross-entropy; AdamW in groups (SSM: lr ≤ 1e-3, no weight decay; learned
    quantizer clips: no weight decay) and a per-step schedule: linear warm-up, then cosine decay to zero.

    The one way to build a classifier: `model` describes it (`ModelConfig` fields), `optim` its schedule; what is
    attached comes typed: `quant` quantizers, `pruned` pruning masks, `noise` analog weight noise (on while
    training, off for validation and test), `chip` the crossbar tiles the model then trains and is validated on
    (mode `chip`; their ranges are measured at each training epoch's start; validation on the ideal device or on
    drawn chips, as `chip.validation` says). `Taps.ORDER` fixes the order the
    tap transforms act in (quantizer, noise, mask).
    Checkpoints store the attachments in their dict form, and the constructor takes either. The `deploy` target
    is validated and tested in recurrent mode, the hardware-faithful one. Signal quantizers that have seen no data
    are calibrated on a few training batches before validation and test.

    Each training step is written out (Lightning's manual optimization): forward, cross-entropy, backward, gradient
    clipping at `optim["grad_clip"]` (L2 norm), AdamW step, schedule step. With `use_cuda_graphs()`, in one process
    on a GPU, the step up to the optimizer's is replayed from a CUDA graph captured at the first training step
    (`GraphedStep`); under DDP the forward and backward pass is, and DDP's hooks reduce the gradients."""

    def __init__(self, d_in: int, n_classes: int, model: dict, optim: dict,
                 quant: Quantization | dict | None = None, pruned: bool = False,
                 noise: WeightNoise | dict | None = None, chip: ChipInTheLoop | dict | None = None):
        super().__init__()
        self.automatic_optimization = False  # training_step writes the step out (the captured graph holds it)
        self._graphs = self._graphed = None  # (wanted, captured (input shape, callable)): see use_cuda_graphs
        self._compile = False
        self.skipped_steps = 0  # chip mode: optimizer steps skipped this epoch (on_before_optimizer_step)
        self.quantization, self.weight_noise = Quantization.of(quant), WeightNoise.of(noise)
        self.chip = ChipInTheLoop.of(chip)
        self.save_hyperparameters({  # stored in checkpoints; a stage's MLflow run has its params already
            "d_in": d_in, "n_classes": n_classes, "model": model, "optim": optim,
            "quant": self.quantization and self.quantization.stored(), "pruned": pruned,
            "noise": self.weight_noise and self.weight_noise.stored(), "chip": self.chip and self.chip.stored()},
            logger=False)
        self.model = S4DClassifier(d_in, n_classes, **model)
        self.accuracy = torch.nn.ModuleDict(
            {f"acc_{s}": MulticlassAccuracy(n_classes, average="micro", validate_args=False) for s in HELD_OUT})
        self.mean_loss = torch.nn.ModuleDict({f"loss_{s}": MeanMetric(nan_strategy="disable") for s in HELD_OUT})
        self.training_totals = None  # TrainingTotals of the epoch in progress
        self.train_mode = self.eval_mode = "conv"
        if self.quantization is not None:
            self.quantization.attach(self.model)
            self.train_mode, self.eval_mode = self.quantization.train_mode, self.quantization.eval_mode
        if pruned:
            attach_masks(self.model)
        if self.weight_noise is not None:
            self.weight_noise.attach(self.model)
        if self.chip is not None:
            self.chip.attach(self.model)
            self.train_mode = self.eval_mode = "chip"

    @property
    def bits(self) -> dict[str, int | None]:
        """Bits per component as configured (`all` = default); {} for a float model."""
        return self.quantization.bits if self.quantization is not None else {}

    def forward(self, x: torch.Tensor, mode: str = "conv") -> torch.Tensor:
        return self.model(x, mode)

    @classmethod
    def load(cls, path: str | Path) -> ClassifierModule:
        """The module a checkpoint at `path` holds, on the CPU: built from its hyperparameters, its weights loaded
        strictly; what Lightning's `load_from_checkpoint` gives, without the walk over the call stack
        (`inspect.stack()`, which reads every frame's source file) that it makes first."""
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        module = cls(**checkpoint["hyper_parameters"])
        module.load_state_dict(checkpoint["state_dict"])
        return module

    def rebuilt(self, **changes) -> ClassifierModule:
        """This module built again with `changes` to its constructor's arguments (what is attached: `quant`,
        `pruned`, `noise`; or its `optim`), holding its weights (only tap state may be new), on its device."""
        return load_weights(ClassifierModule(**{**self.hparams, **changes}), self).to(self.device)

    def use_cuda_graphs(self, enabled: bool = True, compile: bool = False) -> None:
        """Capture the training step (compiled first with `compile`) as a CUDA graph at the next training step, if
        it runs on GPUs in 32 or 64 bits (autocast does not mix with capture); otherwise train eagerly. Under DDP
        each process captures its own forward and backward pass, and DDP's gradient all-reduce runs outside the
        graphs, from the hooks on the parameters' gradient accumulation. A batch of another shape (an epoch's last)
        runs eagerly."""
        self._graphs, self._compile, self._graphed = enabled, compile, None

    def _graphed_callable(self, x: torch.Tensor, y: torch.Tensor):
        """The captured step (one process) or pass (DDP) for batches shaped like x; None where graphs don't apply."""
        usable = (self._graphs and x.is_cuda and self.train_mode != "chip"
                  and self.trainer.precision in ("32-true", "64-true"))
        if not usable:
            return None
        if self._graphed is None:
            graphed = (GraphedStep(self.model, self.train_mode, x, y, self.hparams.optim.get("grad_clip"),
                                   self._compile) if self.trainer.world_size == 1
                       else capture(self.model, self.train_mode, x, self._compile))
            self._graphed = (x.shape, graphed)
        shape, graphed = self._graphed
        return graphed if x.shape == shape else None

    def _forward_backward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, per-sample losses) of a training batch, with the clipped gradients of the mean loss."""
        graphed = self._graphed_callable(x, y)
        if isinstance(graphed, GraphedStep):
            return graphed(x, y)
        self.optimizers().zero_grad(set_to_none=True)
        logits = graphed(x) if graphed is not None else self(x, self.train_mode)
        losses = F.cross_entropy(logits, y, reduction="none")
        self.manual_backward(losses.mean())
        clip = self.hparams.optim.get("grad_clip")
        if clip is not None:
            self.clip_gradients(self.optimizers(), gradient_clip_val=clip, gradient_clip_algorithm="norm")
        return logits, losses

    def _step(self, batch, split: str) -> None:
        """A validation or test batch into its split's torchmetrics."""
        x, y = batch
        logits = self(x, self.eval_mode)
        self.accuracy[f"acc_{split}"].update(logits, y)
        # per-sample losses, no weights: a Python number as weight would be copied to the GPU, a host sync per step
        self.mean_loss[f"loss_{split}"].update(F.cross_entropy(logits, y, reduction="none"))

    def _log_epoch(self, split: str) -> None:
        """The epoch's mean loss and accuracy (over all processes) as `split`/loss and `split`/acc. Accumulated on
        the device each step and logged once: a `self.log` per step costs more host time than a replayed step."""
        for name, metric in ((f"{split}/loss", self.mean_loss[f"loss_{split}"]),
                             (f"{split}/acc", self.accuracy[f"acc_{split}"])):
            self.log(name, metric.compute(), on_step=False, on_epoch=True, sync_dist=True)
            metric.reset()

    def _calibration_batches(self) -> Iterator[torch.Tensor]:
        """The first training batches, on this module's device, loaded only if they are iterated."""
        loader = self.trainer.datamodule.calibration_dataloader()
        return (x.to(self.device) for x, _ in itertools.islice(loader, CALIBRATION_BATCHES))

    def _calibrate(self) -> None:
        if not all(layer.calibrated for layer in tile_layers(self.model)):
            calibrate_tiles(self.model, self._calibration_batches())
        calibrate(self.model, self._calibration_batches(), self.eval_mode)

    def on_train_epoch_start(self) -> None:
        self.skipped_steps = 0
        self.training_totals = TrainingTotals(self.device)
        set_noise(self.model, self.weight_noise.sigma if self.weight_noise is not None else 0.0)
        if tile_layers(self.model):  # ranges follow the weights (building the loader draws from the global RNG)
            calibrate_tiles(self.model, self._calibration_batches())

    def on_validation_start(self) -> None:
        set_noise(self.model, 0.0)
        self._calibrate()

    def on_test_start(self) -> None:
        set_noise(self.model, 0.0)
        self._calibrate()

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits, losses = self._forward_backward(x, y)
        self.training_totals.add(logits, losses, y)
        self.optimizers().step()  # calls on_before_optimizer_step first
        self.lr_schedulers().step()

    def on_before_optimizer_step(self, optimizer) -> None:
        """Chip mode skips a step whose gradients are not all finite (after clipping), as loss scaling skips an
        overflowing step: a drawn chip whose tile puts a mode outside the unit circle can make the gradient
        through hundreds of steps overflow. Counted per epoch as train/skipped_steps."""
        if self.train_mode != "chip":
            return
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if grads and not torch.stack([torch.isfinite(g).all() for g in grads]).all():
            optimizer.zero_grad(set_to_none=True)
            self.skipped_steps += 1

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if batch_idx + 1 == self.trainer.num_training_batches:  # before validation and the epoch-end callbacks
            for name, value in self.training_totals.means().items():
                self.log(f"train/{name}", value, on_step=False, on_epoch=True, sync_dist=True)
            if self.train_mode == "chip":
                self.log("train/skipped_steps", float(self.skipped_steps), on_step=False, on_epoch=True)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def validation_step(self, batch, batch_idx):
        drawn = self.chip is not None and self.chip.validation == "drawn"
        with drawn_chips(self.model, batch_idx) if drawn else nullcontext():  # a fixed chip per batch
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
        scheduler = warmup_cosine(optimizer, warmup, total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> LRScheduler:
    """Factor of the base learning rate at step s of `total`: (s + 1)/warmup for s < warmup, then
    ½·(1 + cos(π·(s − warmup)/(total − warmup))), reaching 0 after the last step."""
    schedules = torch.optim.lr_scheduler
    cosine = schedules.CosineAnnealingLR(optimizer, T_max=max(1, total - warmup))
    if warmup == 0:
        return cosine
    linear = schedules.LinearLR(optimizer, start_factor=1 / warmup, end_factor=1.0, total_iters=max(1, warmup - 1))
    return schedules.SequentialLR(optimizer, [linear, cosine], milestones=[warmup])


class TrainingTotals:
    """A training epoch's summed loss and correct predictions, kept on the device: six small kernels per batch,
    where torchmetrics' two updates launch about thirty, all queued between two graphed steps. Their means are
    torchmetrics' micro accuracy and mean loss to the bit; under DDP, `sync_dist` averages them over the
    processes, whose batch counts are equal."""

    def __init__(self, device: torch.device):
        self.loss, self.samples = torch.zeros((), device=device), 0
        self.correct = torch.zeros((), dtype=torch.long, device=device)

    def add(self, logits: torch.Tensor, losses: torch.Tensor, y: torch.Tensor) -> None:
        self.loss += losses.detach().sum()
        self.correct += (logits.detach().argmax(-1) == y).sum()
        self.samples += len(y)

    def means(self) -> dict[str, torch.Tensor]:
        return {"loss": self.loss / self.samples, "acc": self.correct / self.samples}


def _finished(module: L.LightningModule) -> float:
    """time.perf_counter() once the work queued on the module's GPU is done (the host runs ahead of it)."""
    if module.device.type == "cuda":
        torch.cuda.synchronize(module.device)
    return time.perf_counter()


class EpochReport(L.Callback):
    """After each training epoch: logs the wall time of its training steps (up to its validation, which is not
    counted), its throughput (samples/s over all processes) and learning rate (`train/epoch_seconds`,
    `train/samples_per_s`, `train/lr`) to the Trainer's loggers, and prints one line of the epoch's metrics (when no
    progress bar shows them)."""

    def __init__(self, print_lines: bool = True):
        self.print_lines = print_lines
        self._start = self._seconds = None

    def on_train_epoch_start(self, trainer, module):
        self._start, self._samples, self._seconds = _finished(module), 0, None

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self._samples += len(batch[1])

    def on_validation_epoch_start(self, trainer, module):
        if self._start is not None and self._seconds is None:  # the epoch's validation (not a sanity check)
            self._seconds = _finished(module) - self._start

    def on_train_epoch_end(self, trainer, module):
        seconds = self._seconds if self._seconds is not None else _finished(module) - self._start
        timing = {"train/epoch_seconds": seconds,
                  "train/samples_per_s": self._samples * trainer.world_size / max(seconds, 1e-9),
                  "train/lr": trainer.optimizers[0].param_groups[-1]["lr"]}
        for name, value in timing.items():
            module.log(name, value, on_step=False, on_epoch=True, rank_zero_only=True)
        if trainer.is_global_zero and self.print_lines:
            metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if "/" in k} | timing
            shown = " ".join(f"{k}={metrics[k]:.4g}" for k in sorted(metrics) if k != "train/lr")
            print(f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs} {shown}", flush=True)


class DivergenceCheck(L.Callback):
    """Stops training at the end of an epoch whose mean training loss is not finite, before it is checkpointed
    (checking every step would stall the GPU on a host sync)."""

    def on_train_epoch_end(self, trainer, module):
        loss = trainer.callback_metrics.get("train/loss")
        if loss is not None and not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss is {float(loss)} in epoch {trainer.current_epoch + 1}: the run diverged; "
                "lower the stage's lr, set its grad_clip, or check the data for NaN")


class MatmulPrecision(L.Callback):
    """torch's float32 matrix-product precision (`train.matmul_precision`) in every process that trains, restored
    afterwards. The stage sets it for its own process; the processes DDP spawns start from torch's default
    ("highest"), which would leave them without TF32 products and the Toeplitz convolution."""

    def __init__(self, precision: str):
        self.precision, self.before = precision, None

    def setup(self, trainer, module, stage):
        self.before = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision(self.precision)

    def teardown(self, trainer, module, stage):
        torch.set_float32_matmul_precision(self.before)


class EpochSeed(L.Callback):
    """Seeds torch's generator at each epoch's start from (seed, epoch): dropout and training noise, like the
    batches, do not depend on whether the run was interrupted and resumed."""

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_epoch_start(self, trainer, module):
        torch.manual_seed(self.seed + trainer.current_epoch)


def load_weights(module: ClassifierModule, source: ClassifierModule) -> ClassifierModule:
    """Copy `source`'s weights into `module` (e.g. float → quantized); only tap state and tile ranges may be
    missing, and tile ranges left over."""
    missing, unexpected = module.load_state_dict(source.state_dict(), strict=False)
    extra = [k for k in missing if ".taps." not in k and ".chip." not in k] + [k for k in unexpected
                                                                             if ".chip." not in k]
    if extra:
        raise ValueError(f"checkpoints do not match: {extra[:5]}")
    return module
