"""Shared pieces of the data sets: seeded splits, checksums, and conversion to a Hugging Face DatasetDict."""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from datasets import DatasetDict

SPLITS = ("train", "validation", "test")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


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
        from datasets import Array2D, ClassLabel, Dataset, DatasetDict, Features  # only where data sets are written

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


def is_hub_id(source: str) -> bool:
    return bool(HUB_ID.match(source)) and not source.startswith(".")


def hub_images(source: str, instead: str) -> tuple[dict, str]:
    """{"train": (images, labels), "test": (...)} as uint8 arrays from a Hugging Face data set — a hub id or a
    local folder in a hub format — with an image column (`image` or `img`) and `label`, and its fingerprint.
    `instead` says what else data.source may name, for the error message."""
    from datasets import load_dataset

    if not Path(source).exists() and os.environ.get("HF_HUB_OFFLINE") != "0":
        raise DataError(f"data.source = {source!r} is a Hugging Face hub id: hub downloads are off unless asked for "
                        f"with HF_HUB_OFFLINE=0; or set data.source to {instead}")
    try:
        loaded = load_dataset(source)
    except Exception as error:  # the hub client raises many types; all mean "not available here"
        raise DataError(
            f"could not load Hugging Face data set {source!r} ({type(error).__name__}: {error}). "
            f"Hub downloads need network and HF_HUB_OFFLINE=0; or set data.source to {instead}"
        ) from error
    splits = {}
    for split in ("train", "test"):
        columns = set(loaded[split].column_names) if split in loaded else set()
        image = next((c for c in ("image", "img") if c in columns), None)
        if image is None or "label" not in columns:
            raise DataError(f"{source!r} needs 'train' and 'test' splits with an 'image' (or 'img') and a 'label' "
                            "column")
        part = loaded[split]
        splits[split] = (np.stack([np.asarray(img, dtype=np.uint8) for img in part[image]]),
                         np.asarray(part["label"]))
    return splits, getattr(loaded["train"], "_fingerprint", "unknown")
