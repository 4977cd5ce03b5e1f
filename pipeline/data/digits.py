"""scikit-learn's 8×8 handwritten digits, each image read row by row as a 64-step, 1-channel sequence."""
from __future__ import annotations

from importlib.metadata import version

from sklearn.datasets import load_digits

from pipeline.config import Config
from pipeline.data.common import Prepared, as_sequences, md5_arrays, split_off


def prepare(config: Config) -> Prepared:
    cfg, seed = config.data, config.seed
    digits = load_digits()
    x, y = as_sequences(digits.data / 16.0), digits.target.astype("int64")
    rest, test = split_off(x, y, round(cfg.test_fraction * len(y)), seed)
    train, val = split_off(*rest, max(1, round(cfg.val_fraction * len(y))), seed + 1)
    return Prepared(
        x={"train": train[0], "validation": val[0], "test": test[0]},
        y={"train": train[1], "validation": val[1], "test": test[1]},
        classes=[str(d) for d in range(10)],
        source="sklearn.datasets.load_digits (UCI optical recognition of handwritten digits, test part)",
        version=f"scikit-learn {version('scikit-learn')}",
        checksum=md5_arrays(x, y),
    )
