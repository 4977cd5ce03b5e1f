"""Shared pieces of the data sets: seeded splits, checksums, and conversion to a Hugging Face DatasetDict."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
from datasets import Array2D, ClassLabel, Dataset, DatasetDict, Features

SPLITS = ("train", "validation", "test")


class DataError(RuntimeError):
    """A data source is missing or is not what it should be; the message says what is expected where."""


@dataclass
class Prepared:
    """Arrays of every split, (n, L, C) float32 inputs and int64 labels, plus where they came from."""

    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    classes: list[str]
    source: str
    version: str
    checksum: str
    extra: dict = field(default_factory=dict)

    def meta(self, name: str) -> dict:
        first = self.x["train"]
        return {
            "name": name, "source": self.source, "version": self.version, "checksum": self.checksum,
            "seq_len": int(first.shape[1]), "d_in": int(first.shape[2]), "n_classes": len(self.classes),
            "classes": self.classes, "splits": {s: int(len(self.y[s])) for s in SPLITS},
            "data_md5": md5_arrays(*(a for s in SPLITS for a in (self.x[s], self.y[s]))), **self.extra,
        }

    def to_dataset_dict(self) -> DatasetDict:
        _, length, channels = self.x["train"].shape
        features = Features({"x": Array2D((length, channels), "float32"), "label": ClassLabel(names=self.classes)})
        return DatasetDict({
            s: Dataset.from_dict({"x": self.x[s], "label": self.y[s]}, features=features) for s in SPLITS
        })


def md5_arrays(*arrays: np.ndarray) -> str:
    digest = hashlib.md5()
    for a in arrays:
        digest.update(np.ascontiguousarray(a).tobytes())
    return digest.hexdigest()


def split_off(x: np.ndarray, y: np.ndarray, size: int, seed: int) -> tuple[tuple, tuple]:
    """Split (x, y) into a random held-out part of `size` samples and the rest, fixed by `seed`."""
    if not 0 < size < len(y):
        raise DataError(f"cannot hold out {size} of {len(y)} samples")
    order = np.random.default_rng(seed).permutation(len(y))
    held, rest = order[:size], order[size:]
    return (x[rest], y[rest]), (x[held], y[held])


def as_sequences(x: np.ndarray) -> np.ndarray:
    """(n, L) or (n, L, C) → float32 (n, L, C)."""
    x = np.asarray(x, dtype=np.float32)
    return x[..., None] if x.ndim == 2 else x
