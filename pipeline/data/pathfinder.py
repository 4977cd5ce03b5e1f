"""Pathfinder (Linsley et al., NeurIPS 2018; the Long Range Arena task of Tay et al., ICLR 2021), our own
generator: 32×32 grayscale images, read row by row as 1024 steps.

Every image holds 2 + `distractors` contours of `segments` dashed segments each. A contour is a random walk grown
one segment at a time: each segment is `SEGMENT` px long and turns by at most `MAX_TURN` from the previous one (the
first points anywhere), is reflected at the image margin, and draws its first `DASH` part (a segment that crossed
the margin: the chord between its reflected ends), so contours are dashed. The ink of two contours (dots included)
stays `SEPARATION` px apart (Chebyshev), more than any gap within a contour, so following ink across gaps of ≤ 2 px
traces exactly one contour. A segment's turn is drawn uniformly among those that keep it clear of the contours
already placed (rejection among `CANDIDATES` draws); a walk with no such turn undoes its last `BACKTRACK` segments
and grows on, and one that does not finish is grown again from a new start. Two dots (3×3 squares) mark either both
ends of contour 0 (label 1, "same") or the starts of contours 0 and 1 (label 0, "different"); either way every image
has the same number of contours and dots, and contour 1 starts where another walk from contour 0's start, grown like
contour 0, ends, so the distance between the dots does not give the label away. Vectorised over images.
"""
from __future__ import annotations

import numpy as np

from pipeline.config import Config
from pipeline.data.common import DataError, Prepared, as_sequences

SIZE, MARGIN = 32, 2.0
SEGMENT, DASH, MAX_TURN = 2.0, 0.8, np.pi / 5
SEPARATION = 3  # px (Chebyshev) between the ink of two contours; a gap within a contour is at most 2
CANDIDATES = 8  # turns drawn per segment; the first allowed one is taken
BACKTRACK, PATIENCE = 3, 4  # segments undone when a walk has no allowed turn; steps per segment at most
TRIES = 8  # starts tried per contour before its image is drawn again
RESTARTS, COPIES = 10, 8  # rounds of drawing failed images again, candidates per failed image and round
SAMPLES = 5  # points drawn per dash
DASHES = np.linspace(0, DASH, SAMPLES)[:, None]
DOT = np.stack(np.meshgrid([-1, 0, 1], [-1, 0, 1]), axis=-1).reshape(9, 2)  # a dot's pixels around its centre


def _reflect(x: np.ndarray, low: float, high: float) -> np.ndarray:
    width = high - low
    y = np.mod(x - low, 2 * width)
    return low + np.where(y > width, 2 * width - y, y)


def _hits(mask: np.ndarray | None, images: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Whether any of `points` (m, ..., k, 2) as (x, y) pixels falls on mask[images] (mask n×32×32, images m);
    reduced to (m, ...). A mask of None is empty."""
    if mask is None:
        return np.zeros(points.shape[:-2], dtype=bool)
    images = images.reshape((-1,) + (1,) * (points.ndim - 2))
    return mask[images, points[..., 1], points[..., 0]].any(-1)


def _pixels(points: np.ndarray) -> np.ndarray:
    """The nearest pixels (integer coordinates) of points."""
    return np.rint(points).astype(np.int64)


def _dot(centre: np.ndarray) -> np.ndarray:
    """(n, 9, 2) pixels of 3×3 dots on centres (n, 2)."""
    return _pixels(centre)[:, None] + DOT


def _dashes(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(..., SAMPLES, 2) pixels of the dashes from vertices a to b (..., 2): SAMPLES points on the first DASH
    part of each segment."""
    return _pixels(a[..., None, :] + DASHES * (b - a)[..., None, :])


def _turn(rng: np.random.Generator, near: np.ndarray | None, images: np.ndarray, a: np.ndarray, heading: np.ndarray,
          spread: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(b, heading at b, found) for walks at vertices a (m×2) of near[images]: the first of `count` turns drawn
    uniformly in heading ± spread whose dash avoids `near`; b is reflected at the margin, and so is the heading."""
    turns = heading[:, None] + rng.uniform(-1, 1, (len(a), count)) * spread[:, None]
    ahead = a[:, None] + SEGMENT * np.stack([np.cos(turns), np.sin(turns)], axis=-1)  # (m, count, 2)
    b = _reflect(ahead, MARGIN, SIZE - 1 - MARGIN)
    allowed = ~_hits(near, images, _dashes(a[:, None], b))
    rows, choice = np.arange(len(a)), allowed.argmax(1)
    ahead, b, turn = ahead[rows, choice], b[rows, choice], turns[rows, choice]
    bounce = np.where(ahead == b, 1.0, -1.0)  # a reflected axis turns back
    return b, np.arctan2(bounce[:, 1] * np.sin(turn), bounce[:, 0] * np.cos(turn)), allowed.any(1)


def _contour(rng: np.random.Generator, near: np.ndarray | None, start: np.ndarray, segments: int,
             start_dot: np.ndarray, end_dot: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vertices n×(segments + 1)×2, ink n×32×32, stuck n): one contour per image grown from `start` (n×2,
    inside the margin) segment by segment, avoiding the pixels of `near` (None: nothing to avoid); a walk with no
    allowed turn goes back BACKTRACK segments and grows on from there, for at most PATIENCE·segments steps. Dots
    where asked. A stuck contour (out of steps, or its start or a dot on `near`) is to be grown again; its
    vertices and ink are meaningless."""
    n, images = len(start), np.arange(len(start))
    vertices, heading = np.repeat(start[:, None], segments + 1, axis=1), np.zeros((n, segments + 1))
    grown = np.zeros(n, dtype=np.int64)  # segments in place
    on_ink = _hits(near, images, _pixels(start[:, None]))
    live = images[~(on_ink | (start_dot & _hits(near, images, _dot(start))))]
    for _ in range(PATIENCE * segments):
        if not len(live):
            break
        at = grown[live]
        a, spread = vertices[live, at], np.where(at > 0, MAX_TURN, np.pi)
        b, turn, found = _turn(rng, near, live, a, heading[live, at], spread, 1)
        again = np.flatnonzero(~found)  # rejection: CANDIDATES − 1 more turns for walks whose first was refused
        b[again], turn[again], found[again] = _turn(rng, near, live[again], a[again], heading[live[again], at[again]],
                                                    spread[again], CANDIDATES - 1)
        step, back = live[found], live[~found]
        vertices[step, at[found] + 1], heading[step, at[found] + 1] = b[found], turn[found]
        grown[step] += 1
        grown[back] = np.maximum(grown[back] - BACKTRACK, 0)
        live = live[grown[live] < segments]
    stuck = (grown < segments) | (end_dot & _hits(near, images, _dot(vertices[:, -1])))
    ink = np.zeros((n, SIZE, SIZE), dtype=bool)
    pixels = _dashes(vertices[:, :-1], vertices[:, 1:]).reshape(n, -1, 2)
    ink[images[:, None], pixels[..., 1], pixels[..., 0]] = True
    for where, vertex in ((start_dot, vertices[:, 0]), (end_dot, vertices[:, -1])):
        dot = _dot(vertex[where & ~stuck])
        ink[images[where & ~stuck, None], dot[..., 1], dot[..., 0]] = True
    return vertices, ink, stuck


def _free_starts(rng: np.random.Generator, near: np.ndarray) -> np.ndarray:
    """(n, 2) starts (x, y) uniform over the part of the margin's box that `near` (n×32×32) leaves free, by
    rejection (TRIES draws; a start still on `near` after them gets its contour stuck)."""
    start = rng.uniform(MARGIN, SIZE - 1 - MARGIN, (len(near), 2))
    images = np.arange(len(near))
    for _ in range(TRIES):
        taken = images[_hits(near, images, _pixels(start[:, None]))]
        if not len(taken):
            break
        start[taken] = rng.uniform(MARGIN, SIZE - 1 - MARGIN, (len(taken), 2))
    return start


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
    that gets stuck is grown again, up to TRIES times (then the image has failed and is left)."""
    n = len(same)
    placed, near = np.zeros((n, SIZE, SIZE), dtype=bool), np.zeros((n, SIZE, SIZE), dtype=bool)
    failed, no_dot = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    start0, end0, start1 = np.zeros((3, n, 2))  # (x, y) of contour 0's ends and contour 1's start
    for k in range(2 + distractors):
        start_dot, end_dot = np.full(n, k == 0) | ((k == 1) & ~same), (k == 0) & same
        ink = np.zeros((n, SIZE, SIZE), dtype=bool)
        todo = np.flatnonzero(~failed)
        for _ in range(TRIES):
            if not len(todo):
                break
            if k == 1:  # where another walk from contour 0's start, grown like contour 0, ends
                start = _contour(rng, None, start0[todo], segments, no_dot[todo], no_dot[todo])[0][:, -1]
            else:
                start = _free_starts(rng, near[todo])
            vertices, drawn, stuck = _contour(rng, near[todo], start, segments, start_dot[todo], end_dot[todo])
            done = todo[~stuck]
            ink[done] = drawn[~stuck]
            if k == 0:
                start0[done], end0[done] = vertices[~stuck, 0], vertices[~stuck, -1]
            elif k == 1:
                start1[done] = vertices[~stuck, 0]
            todo = todo[stuck]
        failed[todo] = True
        placed |= ink
        near |= _grow(ink, SEPARATION - 1)
    second = np.where(same[:, None], end0, start1)
    dots = _pixels(np.stack([start0, second], axis=1)[..., ::-1])
    return placed, dots, failed


def generate(n: int, segments: int, distractors: int, seed: int
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images n×32×32 float32 in {0, 1}, labels n (1 = dots on one contour; half of each, shuffled), dot
    centres n×2×2 as (row, column)). An image whose contours found no room is drawn again from scratch, as
    COPIES candidates at once of which the first that found room is kept, for RESTARTS rounds."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 2)
    images, dots = np.zeros((n, SIZE, SIZE), dtype=bool), np.zeros((n, 2, 2), dtype=np.int64)
    todo, copies = np.arange(n), 1
    for _ in range(RESTARTS):
        owner = np.repeat(todo, copies)
        ink, centres, failed = _place(rng, labels[owner] == 1, segments, distractors)
        done, first = np.unique(owner[~failed], return_index=True)
        images[done], dots[done] = ink[~failed][first], centres[~failed][first]
        todo, copies = np.setdiff1d(todo, done), COPIES
        if not len(todo):
            return images.astype(np.float32), labels.astype(np.int64), dots
    raise DataError(f"pathfinder: no room for {2 + distractors} contours of {segments} segments in {SIZE}×{SIZE} "
                    f"({len(todo)} images failed {RESTARTS} rounds of {COPIES} attempts); lower data.distractors "
                    "or data.segments")


def prepare(config: Config) -> Prepared:
    cfg = config.data
    images, labels, _ = generate(cfg.count, cfg.segments, cfg.distractors, cfg.generator_seed)
    x = as_sequences(images.reshape(len(images), -1))
    n_test, n_val = round(cfg.count * cfg.test_fraction), round(cfg.count * cfg.val_fraction)
    parts = {"test": slice(0, n_test), "validation": slice(n_test, n_test + n_val),
             "train": slice(n_test + n_val, None)}
    return Prepared(
        x={s: x[p] for s, p in parts.items()}, y={s: labels[p] for s, p in parts.items()},
        classes=["different", "same"], source="generated (pipeline/data/pathfinder.py)",
        version=f"pathfinder32, {cfg.segments} segments, {cfg.distractors} distractors",
        checksum=f"generator_seed={cfg.generator_seed}",
        extra={"segments": cfg.segments, "distractors": cfg.distractors},
    )
