"""Data sets → Hugging Face `DatasetDict` (train / validation / test) on disk, with a `meta.json` beside it."""
from __future__ import annotations

import json
from pathlib import Path

from pipeline.config import Config
from pipeline.data.common import DataError, Prepared

META = "meta.json"
MIN_VALIDATION_PER_CLASS = 10  # the best checkpoint and the pruning search decide on the validation split


def check_validation_size(prepared: Prepared, config: Config) -> None:
    """Refuse a validation split too small to select on: fewer than MIN_VALIDATION_PER_CLASS samples per class."""
    size, classes = len(prepared.y["validation"]), len(prepared.classes)
    if size < MIN_VALIDATION_PER_CLASS * classes:
        key = "val_size" if hasattr(config.data, "val_size") else "val_fraction"
        raise DataError(
            f"data.{key} = {getattr(config.data, key)} gives {size} validation samples for {classes} classes: "
            f"checkpoint selection and pruning decide on them, so at least {MIN_VALIDATION_PER_CLASS * classes} "
            f"({MIN_VALIDATION_PER_CLASS} per class) are needed; raise data.{key}")


def build(config: Config) -> Prepared:
    """Arrays and provenance of the data set named in `config.data`."""
    from pipeline.data import cifar, digits, fsdd, mnist, mnist1d, pathfinder

    builders = {"mnist1d": mnist1d.prepare, "smnist": mnist.prepare, "psmnist": mnist.prepare,
                "scifar": cifar.prepare, "pathfinder": pathfinder.prepare, "fsdd": fsdd.prepare,
                "digits": digits.prepare}
    return builders[config.data.name](config)


def prepare(config: Config, out_dir: str | Path) -> dict:
    """Build the data set, check its validation split's size, save it with `save_to_disk` to `out_dir` and return
    its metadata."""
    import datasets

    from pipeline.progress import show_progress

    if not show_progress():
        datasets.disable_progress_bars()
    prepared = build(config)
    check_validation_size(prepared, config)
    out_dir = Path(out_dir)
    prepared.to_dataset_dict().save_to_disk(str(out_dir))
    meta = prepared.meta(config.data.name)
    (out_dir / META).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def read_meta(data_dir: str | Path) -> dict:
    path = Path(data_dir) / META
    if not path.is_file():
        raise DataError(f"{path} not found: run the prepare stage first (dvc repro prepare)")
    return json.loads(path.read_text())


__all__ = ["DataError", "build", "prepare", "read_meta"]
