import gzip
import json
import wave

import numpy as np
import pytest

from pipeline import data
from pipeline.config import ConfigError, parse
from pipeline.data.common import DataError
from pipeline.data.datamodule import PreparedDataModule
from pipeline.data.fsdd import clip_to_sequence
from pipeline.data.mnist import IDX_MD5, _from_idx

from conftest import SHARED_DATA, TINY


def config_for(data_params: dict, base):
    return parse({**TINY, "data": data_params}, base=base)


def write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">i4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def idx_folder(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "mnist"
    folder.mkdir()
    for prefix, n in (("train", 30), ("t10k", 10)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 4, 5)))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return folder


def test_digits_prepared_shapes_classes_and_splits(tmp_path):
    meta = data.prepare(config_for({"name": "digits"}, tmp_path), tmp_path / "out")
    assert meta["seq_len"] == 64 and meta["d_in"] == 1 and meta["n_classes"] == 10
    assert sum(meta["splits"].values()) == 1797 and meta["splits"]["test"] == round(0.2 * 1797)
    assert json.loads((tmp_path / "out" / "meta.json").read_text()) == meta
    module = PreparedDataModule(tmp_path / "out", batch_size=32)
    module.setup()
    x, y = next(iter(module.train_dataloader()))
    assert x.shape == (32, 64, 1) and y.dtype.is_floating_point is False
    assert 0 <= float(x.min()) and float(x.max()) <= 1


def test_mnist1d_is_generated_locally_and_deterministic(tmp_path):
    config = config_for({"name": "mnist1d", "num_samples": 500}, tmp_path)
    first, second = data.build(config), data.build(config)
    assert first.x["train"].shape[1:] == (40, 1)
    assert {k: len(v) for k, v in first.y.items()} == {"train": 360, "validation": 40, "test": 100}
    assert first.meta("mnist1d")["data_md5"] == second.meta("mnist1d")["data_md5"]
    assert "make_dataset" in first.source


def test_smnist_and_psmnist_from_idx_fixture(idx_folder, tmp_path):
    common = {"source": str(idx_folder), "verify_checksum": False, "val_size": 5}
    plain = data.build(config_for({"name": "smnist", **common}, tmp_path))
    permuted = data.build(config_for({"name": "psmnist", **common, "permutation_seed": 3}, tmp_path))
    assert {k: v.shape for k, v in plain.x.items()} == {"train": (25, 20, 1), "validation": (5, 20, 1),
                                                         "test": (10, 20, 1)}
    test_plain, test_perm = plain.x["test"][..., 0], permuted.x["test"][..., 0]
    assert not np.array_equal(test_plain, test_perm)
    # one fixed permutation of the pixels, drawn from permutation_seed, the same for every image
    assert np.array_equal(test_plain[:, np.random.default_rng(3).permutation(20)], test_perm)
    assert plain.x["train"].max() <= 1.0


def test_checksum_mismatch_says_what_was_expected(idx_folder, tmp_path):
    with pytest.raises(DataError) as error:
        data.build(config_for({"name": "smnist", "source": str(idx_folder)}, tmp_path))
    message = str(error.value)
    assert "checksum mismatch" in message and "train-images-idx3-ubyte" in message
    assert IDX_MD5["train-images-idx3-ubyte"] in message


def test_missing_folder_says_what_to_put_where(tmp_path):
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte"):
        data.build(config_for({"name": "smnist", "source": "./nowhere"}, tmp_path))
    with pytest.raises(DataError, match="recordings"):
        data.build(config_for({"name": "fsdd", "source": "./nowhere"}, tmp_path))


def test_hugging_face_format_folder(tmp_path):
    from datasets import ClassLabel, Dataset, Features, Image

    rng = np.random.default_rng(1)
    folder = tmp_path / "hub_mnist" / "data"
    folder.mkdir(parents=True)
    features = Features({"image": Image(), "label": ClassLabel(num_classes=10)})
    for split, n in (("train", 20), ("test", 6)):
        images = [rng.integers(0, 256, (6, 6), dtype=np.uint8) for _ in range(n)]
        Dataset.from_dict({"image": images, "label": list(np.arange(n) % 10)}, features=features) \
            .to_parquet(str(folder / f"{split}-00000-of-00001.parquet"))
    prepared = data.build(config_for({"name": "smnist", "source": str(tmp_path / "hub_mnist"), "val_size": 4},
                                     tmp_path))
    assert prepared.x["train"].shape == (16, 36, 1) and prepared.x["test"].shape == (6, 36, 1)


def test_unreachable_hub_id_explains_offline_mode(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="HF_HUB_OFFLINE=0"):
        data.build(config_for({"name": "smnist", "source": "someone/not-a-dataset"}, tmp_path))


@pytest.fixture
def fsdd_folder(tmp_path):
    rng = np.random.default_rng(2)
    folder = tmp_path / "recordings"
    folder.mkdir()
    for digit in range(3):
        for speaker in ("ann", "bob"):
            for take in range(8):
                with wave.open(str(folder / f"{digit}_{speaker}_{take}.wav"), "wb") as f:
                    f.setnchannels(1), f.setsampwidth(2), f.setframerate(8000)
                    f.writeframes(rng.integers(-3000, 3000, rng.integers(50, 120)).astype("<i2").tobytes())
    return folder


def test_fsdd_official_split_normalisation_and_padding(fsdd_folder, tmp_path):
    params = {"name": "fsdd", "source": str(fsdd_folder), "subsample": 2, "length": 40, "val_fraction": 0.2}
    prepared = data.build(config_for(params, tmp_path))
    assert prepared.x["test"].shape == (3 * 2 * 5, 40, 1)  # takes 0–4 of every digit and speaker
    assert len(prepared.y["train"]) + len(prepared.y["validation"]) == 3 * 2 * 3
    assert np.abs(prepared.x["test"]).max() <= 1.0 and prepared.classes == [str(d) for d in range(10)]
    short = data.build(config_for({**params, "length": 200}, tmp_path))
    assert (short.x["test"][:, 60:] == 0).all()  # ≤ 120 samples / 2 → zero padding after step 60
    pair = data.build(config_for({**params, "digits": [0, 2]}, tmp_path))
    assert pair.classes == ["0", "2"] and set(pair.y["test"]) == {0, 1}


def test_clip_normalisation_subsampling_and_padding():
    sequence = clip_to_sequence(np.array([1.0, -4.0, 2.0, 0.0, 3.0]), subsample=2, length=4)
    assert np.allclose(sequence, [0.25, 0.5, 0.75, 0.0])
    assert np.allclose(clip_to_sequence(np.arange(10.0), subsample=1, length=3), [0.0, 1 / 9, 2 / 9])


def test_fsdd_digits_validation_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.digits = \[1\]"):
        config_for({"name": "fsdd", "digits": [1]}, tmp_path)


@pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir(), reason="shared MNIST files not present")
def test_shared_mnist_files_pass_their_checksums():
    splits, checksum = _from_idx(SHARED_DATA / "mnist", verify=True)
    assert splits["train"][0].shape == (60000, 28, 28) and splits["test"][1].shape == (10000,)
    assert len(checksum) == 32
