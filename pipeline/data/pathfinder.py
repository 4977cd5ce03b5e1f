"""Pathfinder (Linsley et al., NeurIPS 2018; the Long Range Arena task of Tay et al., ICLR 2021), our own
generator: 32×32 grayscale images, read row by row as 1024 steps.

Every image holds 2 + `distractors` contours of `segments` dashed segments each. A contour is a random walk:
each segment is `SEGMENT` px long and turns by at most `MAX_TURN` from the previous one; it is reflected at the
image margin. Each segment draws its first `DASH` part, so contours are dashed. Two dots (3×3 squares) mark
either both ends of contour 0 (label 1, "same") or the starts of contours 0 and 1 (label 0, "different");
either way every image has the same number of contours and dots, and contour 1 starts as far from contour 0's
start as a contour's end does, so the distance between the dots does not give the label away. The ink of two contours (dots included)
stays `SEPARATION` px apart (Chebyshev), more than any gap within a contour, so following ink across gaps of
≤ 2 px traces exactly one contour; a contour that would come closer is drawn again. Vectorised over images.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from pipeline.config import Config
from pipeline.data.common import DataError, Prepared, as_sequences

SIZE, MARGIN = 32, 2.0
SEGMENT, DASH, MAX_TURN = 2.0, 0.8, np.pi / 5
SEPARATION = 3  # px (Chebyshev) between the ink of two contours; a gap within a contour is at most 2
TRIES, RESTARTS = 20, 100
SAMPLES = 5  # points drawn per dash


def _reflect(x: np.ndarray, low: float, high: float) -> np.ndarray:
    width = high - low
    y = np.mod(x - low, 2 * width)
    return low + np.where(y > width, 2 * width - y, y)


def _walks(rng: np.random.Generator, n: int, segments: int, anchor: Optional[np.ndarray] = None) -> np.ndarray:
    """(n, segments + 1, 2) vertices (x, y) of random walks inside the margin, from uniform starts or, given
    `anchor` (n×2), from the anchor moved by the end-to-end step of another such walk: the distance from the
    anchor is then distributed like that between a walk's two ends."""
    if anchor is None:
        start = rng.uniform(MARGIN, SIZE - 1 - MARGIN, (n, 1, 2))
    else:
        phantom = _walks(rng, n, segments)
        start = _reflect(anchor + phantom[:, -1] - phantom[:, 0], MARGIN, SIZE - 1 - MARGIN)[:, None]
    angles = rng.uniform(0, 2 * np.pi, (n, 1)) + np.cumsum(rng.uniform(-MAX_TURN, MAX_TURN, (n, segments)), -1)
    steps = SEGMENT * np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    vertices = np.concatenate([start, start + np.cumsum(steps, axis=1)], axis=1)
    return _reflect(vertices, MARGIN, SIZE - 1 - MARGIN)


def _ink(vertices: np.ndarray, start_dot: np.ndarray, end_dot: np.ndarray) -> np.ndarray:
    """(n, 32, 32) bool: the dashes of each walk (SAMPLES points along the first DASH part of each segment; a
    segment that crossed the margin is drawn as the chord between its reflected ends), and 3×3 dots on its
    start and end where asked."""
    n = len(vertices)
    t = np.linspace(0, DASH, SAMPLES)[:, None]
    a, b = vertices[:, :-1, None], vertices[:, 1:, None]
    pixels = np.rint(a + t * (b - a)).astype(np.int64).reshape(n, -1, 2)
    ink = np.zeros((n, SIZE, SIZE), dtype=bool)
    ink[np.arange(n)[:, None], pixels[..., 1], pixels[..., 0]] = True
    for where, vertex in ((start_dot, vertices[:, 0]), (end_dot, vertices[:, -1])):
        centre = np.rint(vertex[where]).astype(np.int64)
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                ink[np.flatnonzero(where), np.clip(centre[:, 1] + dr, 0, SIZE - 1),
                    np.clip(centre[:, 0] + dc, 0, SIZE - 1)] = True
    return ink


def _grow(masks: np.ndarray, radius: int) -> np.ndarray:
    """Dilation of the last two axes by a (2·radius + 1)² square."""
    grown = masks.copy()
    for axis in (-1, -2):
        source = grown.copy()
        for shift in range(1, radius + 1):
            ahead, behind = [slice(None)] * masks.ndim, [slice(None)] * masks.ndim
            ahead[axis], behind[axis] = slice(shift, None), slice(None, -shift)
            grown[tuple(behind)] |= source[tuple(ahead)]
            grown[tuple(ahead)] |= source[tuple(behind)]
    return grown


def _place(rng: np.random.Generator, same: np.ndarray, segments: int, distractors: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ink n×32×32, dot centres n×2×2 as (row, column), failed n): contours placed one after the other; one
    that comes within SEPARATION of those already placed is drawn again, up to TRIES times (then the image
    has failed)."""
    n = len(same)
    placed, near = np.zeros((n, SIZE, SIZE), dtype=bool), np.zeros((n, SIZE, SIZE), dtype=bool)
    failed = np.zeros(n, dtype=bool)
    ends = []
    for k in range(2 + distractors):
        start_dot, end_dot = np.full(n, k == 0) | ((k == 1) & ~same), (k == 0) & same
        anchor = ends[0][0] if k == 1 else None  # the second dot of a "different" image: as far as a walk's end
        vertices = _walks(rng, n, segments, anchor)
        ink = _ink(vertices, start_dot, end_dot)
        redo = (ink & near).any(axis=(1, 2)) & ~failed
        for _ in range(TRIES):
            if not redo.any():
                break
            vertices[redo] = _walks(rng, int(redo.sum()), segments, None if anchor is None else anchor[redo])
            ink[redo] = _ink(vertices[redo], start_dot[redo], end_dot[redo])
            redo[redo] = (ink[redo] & near[redo]).any(axis=(1, 2))
        failed |= redo
        placed |= ink
        near |= _grow(ink, SEPARATION - 1)
        ends.append((vertices[:, 0], vertices[:, -1]))
    second = np.where(same[:, None], ends[0][1], ends[1][0])
    dots = np.rint(np.stack([ends[0][0], second], axis=1)[..., ::-1]).astype(np.int64)
    return placed, dots, failed


def generate(n: int, segments: int, distractors: int, seed: int
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images n×32×32 float32 in {0, 1}, labels n (1 = dots on one contour; half of each, shuffled), dot
    centres n×2×2 as (row, column)). An image whose contours found no room is drawn again from scratch."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 2)
    images, dots = np.zeros((n, SIZE, SIZE), dtype=bool), np.zeros((n, 2, 2), dtype=np.int64)
    todo = np.arange(n)
    for _ in range(RESTARTS):
        ink, centres, failed = _place(rng, labels[todo] == 1, segments, distractors)
        images[todo[~failed]], dots[todo[~failed]] = ink[~failed], centres[~failed]
        todo = todo[failed]
        if not len(todo):
            return images.astype(np.float32), labels.astype(np.int64), dots
    raise DataError(f"pathfinder: no room for {2 + distractors} contours of {segments} segments in {SIZE}×{SIZE} "
                    f"({len(todo)} images failed {RESTARTS} times); lower data.distractors or data.segments")


def prepare(config: Config) -> Prepared:
    cfg = config.data
    images, labels, _ = generate(cfg.count, cfg.segments, cfg.distractors, cfg.generator_seed)
    x = as_sequences(images.reshape(len(images), -1))
    n_test, n_val = round(cfg.count * cfg.test_fraction), round(cfg.count * cfg.val_fraction)
    parts = {"test": slice(0, n_test), "validation": slice(n_test, n_test + n_val), "train": slice(n_test + n_val, None)}
    return Prepared(
        x={s: x[p] for s, p in parts.items()}, y={s: labels[p] for s, p in parts.items()},
        classes=["different", "same"], source="generated (pipeline/data/pathfinder.py)",
        version=f"pathfinder32, {cfg.segments} segments, {cfg.distractors} distractors",
        checksum=f"generator_seed={cfg.generator_seed}",
        extra={"segments": cfg.segments, "distractors": cfg.distractors},
    )
