"""Sequential MNIST (sMNIST: 784 steps of one pixel) and permuted sMNIST (psMNIST: one fixed permutation).

Read from the four standard IDX files in a local folder (checksums verified), or from a Hugging Face data set
(hub id such as `ylecun/mnist`, or a local folder in a hub format) with `image` and `label` columns.
"""
from __future__ import annotations

import gzip
import hashlib
import zlib
from pathlib import Path

import numpy as np

from pipeline.config import Config
from pipeline.data.common import DataError, Prepared, as_sequences, hub_images, is_hub_id, split_off

# md5 of the decompressed standard files (LeCun, Cortes & Burges), as listed in ../shared/data/README.md.
IDX_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}


def read_idx(data: bytes) -> np.ndarray:
    """Decode an IDX file: 2 zero bytes, a dtype code (0x08 = uint8), the rank, big-endian int32 dims, data."""
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise DataError("not an IDX file of unsigned bytes")
    rank = data[3]
    dims = np.frombuffer(data, ">i4", count=rank, offset=4)
    array = np.frombuffer(data, np.uint8, offset=4 + 4 * rank)
    if array.size != int(np.prod(dims)):
        raise DataError(f"IDX payload has {array.size} bytes, header says {tuple(dims)}")
    return array.reshape(tuple(int(d) for d in dims))


def _read_file(folder: Path, name: str) -> tuple[Path, bytes]:
    for candidate, opener in ((folder / f"{name}.gz", gzip.open), (folder / name, open)):
        if candidate.is_file():
            try:
                with opener(candidate, "rb") as f:
                    return candidate, f.read()
            except (EOFError, OSError, zlib.error) as error:
                raise DataError(f"{candidate}: cannot be read ({type(error).__name__}: {error}); the file is "
                                "truncated or corrupt: replace it with a fresh copy of the MNIST file") from None
    raise DataError(f"missing {name}(.gz) in {folder}; expected the four MNIST IDX files: {sorted(IDX_MD5)}")


def _from_idx(folder: Path, verify: bool) -> tuple[dict, str]:
    arrays, digests = {}, {}
    for name, expected in IDX_MD5.items():
        path, data = _read_file(folder, name)
        digests[name] = hashlib.md5(data).hexdigest()
        if verify and digests[name] != expected:
            raise DataError(
                f"checksum mismatch for {path}: md5 {digests[name]}, expected {expected} (the standard MNIST "
                "file; a truncated or damaged copy fails this too); replace the file, or set "
                "data.verify_checksum: false to use other data in IDX format"
            )
        try:
            arrays[name] = read_idx(data)
        except DataError as error:
            raise DataError(f"{path}: {error}") from None
    splits = {"train": (arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"]),
              "test": (arrays["t10k-images-idx3-ubyte"], arrays["t10k-labels-idx1-ubyte"])}
    checksum = hashlib.md5("".join(digests[n] for n in IDX_MD5).encode()).hexdigest()
    return splits, checksum


def prepare(config: Config) -> Prepared:
    cfg = config.data
    folder = config.path(cfg.source)
    if folder.is_dir() and any((folder / f"{n}{z}").is_file() for n in IDX_MD5 for z in ("", ".gz")):
        splits, checksum = _from_idx(folder, cfg.verify_checksum)
        source = str(folder)
    elif folder.is_dir() or is_hub_id(cfg.source):
        splits, checksum = hub_images(str(folder) if folder.is_dir() else cfg.source, "the folder of the IDX files")
        source = cfg.source
    else:
        raise DataError(
            f"data.source = {cfg.source!r}: folder {folder} not found. Put the four MNIST IDX files "
            f"({', '.join(IDX_MD5)}, optionally .gz) there, or give a Hugging Face hub id such as 'ylecun/mnist'"
        )
    (images, labels), (test_images, test_labels) = splits["train"], splits["test"]
    length = images.shape[1] * images.shape[2]
    order = (np.random.default_rng(cfg.permutation_seed).permutation(length)
             if cfg.name == "psmnist" else np.arange(length))

    def sequences(img: np.ndarray) -> np.ndarray:
        return as_sequences(img.reshape(len(img), length)[:, order] / 255.0)

    x, y = sequences(images), labels.astype("int64")
    if cfg.val_size >= len(y):
        raise DataError(f"data.val_size = {cfg.val_size}: must be smaller than the {len(y)} training samples")
    (x_train, y_train), (x_val, y_val) = split_off(x, y, cfg.val_size, config.seed)
    return Prepared(
        x={"train": x_train, "validation": x_val, "test": sequences(test_images)},
        y={"train": y_train, "validation": y_val, "test": test_labels.astype("int64")},
        classes=[str(d) for d in range(10)],
        source=source, version="MNIST (LeCun, Cortes & Burges)", checksum=checksum,
        extra={"permutation_seed": cfg.permutation_seed} if cfg.name == "psmnist" else {},
    )
