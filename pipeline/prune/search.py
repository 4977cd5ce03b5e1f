"""Greedy pruning on the validation set (the test set is only for the final report).

Candidates are ranked by a cheap saliency, lowest first: for a state mode |Cₙ·B̄ₙ| / (1 − |Āₙ|) (its
output scale times its memory: the l¹ size of its kernel term), for a single entry its magnitude. They are
removed in chunks that double after every success and halve after every failure, as long as the validation
accuracy stays ≥ baseline − tolerance.
"""
from __future__ import annotations

from typing import Callable

import torch

from pipeline.model import S4DClassifier
from pipeline.prune.masks import LayerMasks, Mask, attach_masks

Candidate = tuple[float, Mask, int]  # (saliency, mask, flat index into mask.keep)


@torch.no_grad()
def accuracy(model: S4DClassifier, x: torch.Tensor, y: torch.Tensor, mode: str, batch: int = 256) -> float:
    """Accuracy in evaluation mode, on the model's device; the model's train/eval state is left as it was."""
    was_training = model.training
    model.eval()
    on = next(model.parameters()).device
    correct = sum(int((model(x[i:i + batch].to(on), mode).argmax(-1).cpu() == y[i:i + batch]).sum())
                  for i in range(0, len(y), batch))
    model.train(was_training)
    return correct / len(y)


def _ranked(per_layer) -> list[Candidate]:
    """Candidates from (mask, saliency, live) triples, one per layer; entries already removed are skipped."""
    out = []
    for mask, saliency, live in per_layer:
        out += [(s, mask, i) for i, (s, alive) in enumerate(zip(saliency.flatten().tolist(), live.flatten().tolist()))
                if alive]
    return out


@torch.no_grad()
def mode_candidates(model: S4DClassifier, layers: list[LayerMasks]) -> list[Candidate]:
    def per_layer(block, masks):
        A_bar, B_bar, C, _ = block.ssm.discrete()
        return masks.mode, (C * B_bar).abs() / (1 - A_bar.abs()).clamp_min(1e-6), masks.mode.keep[..., 0]
    return _ranked(per_layer(b, m) for b, m in zip(model.blocks, layers))


@torch.no_grad()
def entry_candidates(model: S4DClassifier, layers: list[LayerMasks]) -> list[Candidate]:
    return _ranked((m.entry, torch.view_as_real(b.ssm.output_matrix()).abs(), m.entry.keep * m.mode.keep)
                   for b, m in zip(model.blocks, layers))


@torch.no_grad()
def mixing_candidates(model: S4DClassifier, layers: list[LayerMasks]) -> list[Candidate]:
    return _ranked((m.mix, b.mix.weight.abs(), m.mix.keep) for b, m in zip(model.blocks, layers))


def _set(candidates: list[Candidate], value: float) -> None:
    for _, mask, index in candidates:
        mask.keep.view(-1)[index] = value


@torch.no_grad()
def greedy(candidates: list[Candidate], score: Callable[[], float], floor: float) -> int:
    """Remove candidates in ascending saliency while score() ≥ floor; returns how many were removed."""
    order = sorted(candidates, key=lambda c: c[0])
    done, chunk = 0, max(1, len(order) // 32)
    while done < len(order) and chunk >= 1:
        trial = order[done:done + chunk]
        _set(trial, 0.0)
        if score() >= floor:
            done, chunk = done + len(trial), chunk * 2
        else:
            _set(trial, 1.0)
            chunk //= 2
    return done


GRANULARITIES = {"structured": mode_candidates, "unstructured": entry_candidates, "mixing": mixing_candidates}


def prune(model: S4DClassifier, x_val: torch.Tensor, y_val: torch.Tensor, mode: str, tolerance: float,
          granularities: tuple[str, ...] = ("structured", "unstructured", "mixing")) -> dict:
    """Attach masks and prune each granularity in turn, keeping validation accuracy ≥ baseline − tolerance."""
    if tolerance < 0:
        raise ValueError(f"tolerance = {tolerance}: must be ≥ 0")
    layers = attach_masks(model)
    baseline = accuracy(model, x_val, y_val, mode)
    score = lambda: accuracy(model, x_val, y_val, mode)  # noqa: E731
    removed = {g: greedy(GRANULARITIES[g](model, layers), score, baseline - tolerance) for g in granularities}
    return {"baseline_val_acc": baseline, "val_acc": score(), "removed": removed, "layers": layers}
