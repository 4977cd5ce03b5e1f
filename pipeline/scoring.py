"""How well a classifier does on tensors (x, y), batch by batch in evaluation mode: accuracy with torchmetrics,
the same metric training logs, and the mean cross-entropy (summed in float64, so a rounding-level change of the
model moves it by a rounding-level amount). Pruning, the robustness curve and the crossbar evaluation use these.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from pipeline.model import S4DClassifier


def _accuracy(classes: int, **kwargs) -> MulticlassAccuracy:
    return MulticlassAccuracy(classes, average="micro", validate_args=False, **kwargs)


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """`model` in evaluation mode within the block; afterwards each of its modules is back in the train/eval
    state it had (an evaluation leaves a model that is still to be trained as it was)."""
    states = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in states:
            module.training = training


@torch.no_grad()
def scores(model: S4DClassifier, x: torch.Tensor, y: torch.Tensor, mode: str, batch: int = 256) -> dict[str, float]:
    """{"accuracy", "loss" (mean cross-entropy)} in evaluation mode, on the model's device; the model's
    train/eval state is left as it was."""
    on = next(model.parameters()).device
    accuracy, loss = _accuracy(model.decoder.out_features), 0.0
    with evaluating(model):
        for i in range(0, len(y), batch):
            logits, target = model(x[i:i + batch].to(on), mode).cpu(), y[i:i + batch]
            accuracy.update(logits, target)
            loss += float(F.cross_entropy(logits.double(), target, reduction="sum"))
    return {"accuracy": float(accuracy.compute()), "loss": loss / len(y)}


def accuracy(model: S4DClassifier, x: torch.Tensor, y: torch.Tensor, mode: str, batch: int = 256) -> float:
    return scores(model, x, y, mode, batch)["accuracy"]


@torch.no_grad()
def copy_accuracies(model: S4DClassifier, x: torch.Tensor, y: torch.Tensor, copies: int,
                    batch_size: int = 256) -> torch.Tensor:
    """Accuracy of each of `copies` models run as one, whose inputs are the batch repeated once per copy (e.g. the
    chips of a simulated model): a sample-wise accuracy over the (copies, sequences) predictions. `batch_size`
    counts sequences × copies."""
    per_batch = max(1, batch_size // copies)
    on = next(model.parameters()).device
    predictions = []
    for start in range(0, len(x), per_batch):
        xb = x[start:start + per_batch].to(on)
        predictions.append(model(xb.repeat(copies, 1, 1)).view(copies, len(xb), -1).argmax(-1).cpu())
    accuracy = _accuracy(model.decoder.out_features, multidim_average="samplewise")
    return accuracy(torch.cat(predictions, dim=1), y.expand(copies, -1)).reshape(copies)  # one copy: not 0-dim
