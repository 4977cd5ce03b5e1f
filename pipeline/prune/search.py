"""Pruning search on a held-out split (validation by default; the test set only for the final report).

Candidates are ranked by a cheap saliency, lowest first: for a state mode |Cₙ·B̄ₙ| / (1 − |Āₙ|) (its output scale
times its memory: the l¹ size of its kernel term); for a single entry its magnitude over the largest of its tensor
in its layer (so entries of Ā, B̄, C and D, of different scales, share one ranking); for a mixing weight its
magnitude. Every candidate is tried once, in that order, and kept removed when the criterion still holds after
removing it, skipped when it does not (QS4D's rule: not a prefix that stops at the first failure):

    accuracy   validation accuracy ≥ baseline − tolerance (QS4D's rule; on n samples it moves in steps of 1/n,
               so one sample near the decision boundary can flip a decision)
    loss       validation cross-entropy ≤ baseline · (1 + tolerance) (continuous: a rounding-level change of the
               model moves it by a rounding-level amount)

    sequential  one candidate per evaluation (QS4D's; as many evaluations as candidates)
    chunked     candidates tried in chunks that double after a success and halve after a failure, down to
                1/`chunks` of the candidates; a failing chunk of that size is skipped whole (about `chunks`
                evaluations where most fail, a few dozen where most pass)
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch

from pipeline.model import S4DClassifier
from pipeline.prune.masks import ENTRY_TAPS, LayerMasks, Mask, attach_masks
from pipeline.scoring import scores

Candidate = tuple[float, Mask, int]  # (saliency, mask, flat index into mask.keep)
SEARCHES = ("chunked", "sequential")
CRITERIA = ("accuracy", "loss")


def _ranked(per_layer) -> list[Candidate]:
    """Candidates from (mask, saliency, live) triples; entries already removed are skipped."""
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
    def relative(value: torch.Tensor) -> torch.Tensor:
        magnitude = (torch.view_as_real(value) if value.is_complex() else value).abs()
        return magnitude / magnitude.max().clamp_min(torch.finfo(magnitude.dtype).tiny)

    out = []
    for block, masks in zip(model.blocks, layers):
        tensors = dict(zip(ENTRY_TAPS, block.ssm.discrete()))  # (Ā, B̄, C, D), the taps' order
        out += _ranked((masks.entries[tap], relative(tensors[tap]), masks.live(tap)) for tap in ENTRY_TAPS)
    return out


@torch.no_grad()
def mixing_candidates(model: S4DClassifier, layers: list[LayerMasks]) -> list[Candidate]:
    return _ranked((m.mix, b.mix.weight.abs(), m.mix.keep) for b, m in zip(model.blocks, layers))


def _set(candidates: list[Candidate], value: float) -> None:
    for _, mask, index in candidates:
        mask.keep.view(-1)[index] = value


@torch.no_grad()
def remove(candidates: list[Candidate], score: Callable[[], float], floor: float, search: str = "chunked",
           chunks: int = 128) -> int:
    """Try every candidate in ascending saliency, keeping those whose removal leaves score() ≥ floor (module
    docstring: `search`, `chunks`); returns how many were removed."""
    order = sorted(candidates, key=lambda c: c[0])
    if search == "sequential":
        size = smallest = growth = 1
    else:
        smallest, growth = max(1, math.ceil(len(order) / chunks)), 2
        size = max(smallest, len(order) // 32)
    at = removed = 0
    while at < len(order):
        trial = order[at:at + size]
        _set(trial, 0.0)
        if score() >= floor:
            at, removed, size = at + len(trial), removed + len(trial), size * growth
        else:
            _set(trial, 1.0)
            if size > smallest:
                size = max(smallest, size // 2)
            else:
                at += len(trial)  # skipped
    return removed


GRANULARITIES = {"structured": mode_candidates, "unstructured": entry_candidates, "mixing": mixing_candidates}


def prune(model: S4DClassifier, x_val: torch.Tensor, y_val: torch.Tensor, mode: str, tolerance: float,
          granularities: tuple[str, ...] = ("structured", "unstructured", "mixing"),
          criterion: str = "accuracy", search: str = "chunked", chunks: int = 128) -> dict:
    """Attach masks and prune each granularity in turn while `criterion` (module docstring) holds on (x_val,
    y_val); one line per granularity reports what it removed."""
    if tolerance < 0:
        raise ValueError(f"tolerance = {tolerance}: must be ≥ 0")
    if criterion not in CRITERIA:
        raise ValueError(f"criterion = {criterion!r}: allowed {list(CRITERIA)}")
    if search not in SEARCHES:
        raise ValueError(f"search = {search!r}: allowed {list(SEARCHES)}")
    layers = attach_masks(model)
    baseline = scores(model, x_val, y_val, mode)
    sign = 1 if criterion == "accuracy" else -1  # remove keeps score ≥ floor: the loss enters negated
    evaluations = 0

    def score() -> float:
        nonlocal evaluations
        evaluations += 1
        return sign * scores(model, x_val, y_val, mode)[criterion]

    floor = baseline["accuracy"] - tolerance if criterion == "accuracy" else -baseline["loss"] * (1 + tolerance)
    removed = {}
    for granularity in granularities:
        candidates, start, evaluations = GRANULARITIES[granularity](model, layers), time.perf_counter(), 0
        removed[granularity] = remove(candidates, score, floor, search, chunks)
        print(f"prune search ({search}), {granularity}: {removed[granularity]} of {len(candidates)} removed "
              f"({evaluations} evaluations on {len(y_val)} held-out samples, {time.perf_counter() - start:.1f} s)",
              flush=True)
    after = scores(model, x_val, y_val, mode)
    return {"baseline_val_acc": baseline["accuracy"], "val_acc": after["accuracy"],
            "baseline_val_loss": baseline["loss"], "val_loss": after["loss"], "removed": removed, "layers": layers}
