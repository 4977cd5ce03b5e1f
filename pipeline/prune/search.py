"""Greedy pruning on the validation set (the test set is only for the final report).

Candidates are ranked by a cheap saliency, lowest first: for a state mode |Cₙ·B̄ₙ| / (1 − |Āₙ|) (its
output scale times its memory: the l¹ size of its kernel term), for a single entry its magnitude. They are
removed in chunks that double after every success and halve after every failure, as long as the criterion holds:

    accuracy   validation accuracy ≥ baseline − tolerance (QS4D's rule; on n samples it moves in steps of 1/n,
               so one sample near the decision boundary can flip a decision)
    loss       validation cross-entropy ≤ baseline · (1 + tolerance) (continuous: a rounding-level change of the
               model moves it by a rounding-level amount)
"""
from __future__ import annotations

import time
from collections.abc import Callable

import torch

from pipeline.model import S4DClassifier
from pipeline.prune.masks import LayerMasks, Mask, attach_masks
from pipeline.scoring import scores

Candidate = tuple[float, Mask, int]  # (saliency, mask, flat index into mask.keep)


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


CRITERIA = ("accuracy", "loss")


def prune(model: S4DClassifier, x_val: torch.Tensor, y_val: torch.Tensor, mode: str, tolerance: float,
          granularities: tuple[str, ...] = ("structured", "unstructured", "mixing"),
          criterion: str = "accuracy") -> dict:
    """Attach masks and prune each granularity in turn while `criterion` (module docstring) holds; one line per
    granularity reports what it removed."""
    if tolerance < 0:
        raise ValueError(f"tolerance = {tolerance}: must be ≥ 0")
    if criterion not in CRITERIA:
        raise ValueError(f"criterion = {criterion!r}: allowed {list(CRITERIA)}")
    layers = attach_masks(model)
    baseline = scores(model, x_val, y_val, mode)
    sign = 1 if criterion == "accuracy" else -1  # greedy keeps score ≥ floor: the loss enters negated
    evaluations = 0

    def score() -> float:
        nonlocal evaluations
        evaluations += 1
        return sign * scores(model, x_val, y_val, mode)[criterion]

    floor = baseline["accuracy"] - tolerance if criterion == "accuracy" else -baseline["loss"] * (1 + tolerance)
    removed = {}
    for granularity in granularities:
        candidates, start, evaluations = GRANULARITIES[granularity](model, layers), time.perf_counter(), 0
        removed[granularity] = greedy(candidates, score, floor)
        print(f"prune search, {granularity}: {removed[granularity]} of {len(candidates)} removed "
              f"({evaluations} evaluations on {len(y_val)} validation samples, {time.perf_counter() - start:.1f} s)",
              flush=True)
    after = scores(model, x_val, y_val, mode)
    return {"baseline_val_acc": baseline["accuracy"], "val_acc": after["accuracy"],
            "baseline_val_loss": baseline["loss"], "val_loss": after["loss"], "removed": removed, "layers": layers}
