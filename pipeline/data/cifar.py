"""Sequential CIFAR-10 (sCIFAR): each 32×32 image in grayscale, read row by row as 1024 steps of one value.

Grayscale is the ITU-R BT.601 luma 0.299·R + 0.587·G + 0.114·B (PIL's and torchvision's conversion), kept as
a float; values are normalised with QS4D's mean 122.6/255 and std 61/255 (on the 0..255 scale: (L − 122.6)/61).
Read from a local folder of the standard CIFAR-10 python batches (data_batch_1..5, test_batch; also inside
cifar-10-batches-py/) or from a Hugging Face data set (hub id such as `uoft-cs/cifar10`, or a local folder in
a hub format) with an `img` (or `image`) and a `label` column. 50k/10k images; `val_size` held out by seed.
"""
from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np

from pipeline.config import Config
from pipeline.data.common import DataError, Prepared, as_sequences, hub_images, is_hub_id, split_off

TRAIN_BATCHES, TEST_BATCH = tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch"
MEAN, STD = 122.6, 61.0
LUMA = np.array([0.299, 0.587, 0.114])
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def batches_folder(folder: Path) -> Path | None:
    """The folder holding the python batches: `folder` itself or its cifar-10-batches-py/."""
    for candidate in (folder, folder / "cifar-10-batches-py"):
        if (candidate / TRAIN_BATCHES[0]).is_file():
            return candidate
    return None


def _read_batches(folder: Path, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(images n×32×32×3 uint8, labels, md5 per file); a batch row is 1024 R, 1024 G, 1024 B, row-major."""
    images, labels, digests = [], [], []
    for name in names:
        path = folder / name
        if not path.is_file():
            raise DataError(f"missing {path}; a CIFAR-10 python folder holds {', '.join(TRAIN_BATCHES)} and "
                            f"{TEST_BATCH}")
        raw = path.read_bytes()
        digests.append(hashlib.md5(raw).hexdigest())
        try:
            batch = pickle.loads(raw, encoding="bytes")
            images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            labels.append(np.asarray(batch[b"labels"], dtype=np.int64))
        except Exception as error:  # unpickling reports damage in many ways
            raise DataError(f"{path}: not a CIFAR-10 python batch ({type(error).__name__}: {error}); the file is "
                            "truncated or of another kind: replace it with the batch of the CIFAR-10 python "
                            "version") from None
        if len(images[-1]) != len(labels[-1]):
            raise DataError(f"{path}: {len(images[-1])} images but {len(labels[-1])} labels; replace the file")
    return np.concatenate(images), np.concatenate(labels), digests


def sequences(images: np.ndarray) -> np.ndarray:
    """(n, H, W, 3) uint8 RGB → (n, H·W, 1) float32 normalised grayscale, row by row."""
    gray = images.astype(np.float64) @ LUMA
    return as_sequences(((gray - MEAN) / STD).reshape(len(images), -1))


def prepare(config: Config) -> Prepared:
    cfg = config.data
    folder = config.path(cfg.source)
    python_batches = batches_folder(folder) if folder.is_dir() else None
    if python_batches is not None:
        images, labels, train_md5 = _read_batches(python_batches, TRAIN_BATCHES)
        test_images, test_labels, test_md5 = _read_batches(python_batches, (TEST_BATCH,))
        checksum = hashlib.md5("".join(train_md5 + test_md5).encode()).hexdigest()
        source = str(python_batches)
    elif folder.is_dir() or is_hub_id(cfg.source):
        splits, checksum = hub_images(str(folder) if folder.is_dir() else cfg.source,
                                      "a folder of the CIFAR-10 python batches")
        (images, labels), (test_images, test_labels) = splits["train"], splits["test"]
        source = cfg.source
    else:
        raise DataError(f"data.source = {cfg.source!r}: folder {folder} not found. Give a folder of the CIFAR-10 "
                        f"python batches ({', '.join(TRAIN_BATCHES)}, {TEST_BATCH}) or a Hugging Face hub id "
                        "such as 'uoft-cs/cifar10'")
    if images.ndim != 4 or images.shape[-1] != 3:
        raise DataError(f"{source}: expected RGB images (n, H, W, 3), got shape {images.shape}")
    if cfg.val_size >= len(labels):
        raise DataError(f"data.val_size = {cfg.val_size}: must be smaller than the {len(labels)} training images")
    (x_train, y_train), (x_val, y_val) = split_off(sequences(images), labels.astype("int64"), cfg.val_size,
                                                   config.seed)
    return Prepared(
        x={"train": x_train, "validation": x_val, "test": sequences(test_images)},
        y={"train": y_train, "validation": y_val, "test": test_labels.astype("int64")},
        classes=CLASSES, source=source, version="CIFAR-10 (Krizhevsky 2009), grayscale", checksum=checksum,
        extra={"normalisation": {"mean": MEAN / 255, "std": STD / 255}},
    )
