import gzip
import json
import wave

import lightning as L
import numpy as np
import pytest
import torch
from conftest import SHARED_DATA, TINY

from pipeline import data
from pipeline.config import ConfigError, parse
from pipeline.data.common import DataError
from pipeline.data.datamodule import DeviceBatches, EpochShuffle, PreparedDataModule
from pipeline.data.fsdd import clip_to_sequence
from pipeline.data.mnist import IDX_MD5, _from_idx


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


def test_a_validation_split_too_small_to_select_on_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"data\.val_fraction = 1e-06 gives 1 validation samples for 10 classes.*at "
                                        r"least 100"):
        data.prepare(config_for({"name": "digits", "val_fraction": 1e-6}, tmp_path), tmp_path / "out")
    assert not (tmp_path / "out").exists()  # refused before anything is written
    meta = data.prepare(config_for({"name": "digits", "val_fraction": 0.06}, tmp_path), tmp_path / "out")
    assert meta["splits"]["validation"] == round(0.06 * 1797) >= 100


def test_training_batches_follow_the_seeded_epoch_permutation_and_drop_the_remainder(tmp_path):
    data.prepare(config_for({"name": "digits"}, tmp_path), tmp_path / "out")
    module = PreparedDataModule(tmp_path / "out", batch_size=32, seed=5)
    module.setup()
    loader = module.train_dataloader()
    loader.sampler.set_epoch(2)
    all_x, all_y = module.splits["train"].tensors
    order = torch.randperm(len(all_y), generator=torch.Generator().manual_seed(5 + 2))
    batches = list(loader)
    assert len(batches) == len(all_y) // 32
    for i, (x, y) in enumerate(batches):
        assert torch.equal(x, all_x[order[32 * i:32 * (i + 1)]]) and torch.equal(y, all_y[order[32 * i:32 * (i + 1)]])


def _same_batches(first, second) -> bool:
    """Whether two loaders (or lists of batches) give equal batches, wherever their tensors are."""
    return all(torch.equal(a.cpu(), b.cpu()) for one, other in zip(first, second, strict=True)
               for a, b in zip(one, other, strict=True))


def _host_and_trainer_modules(tmp_path, accelerator: str) -> tuple[PreparedDataModule, PreparedDataModule]:
    """The digits data module without a trainer, and the same under a one-device trainer of `accelerator`."""
    data.prepare(config_for({"name": "digits"}, tmp_path), tmp_path / "out")
    host = PreparedDataModule(tmp_path / "out", batch_size=32, seed=5)
    host.setup()
    module = PreparedDataModule(tmp_path / "out", batch_size=32, seed=5)
    module.trainer = L.Trainer(accelerator=accelerator, devices=1, logger=False)
    module.setup()
    return host, module


@pytest.mark.parametrize("train", [True, False])
def test_batches_gathered_by_device_index_tensors_equal_the_host_loaders(tmp_path, train):
    data.prepare(config_for({"name": "digits"}, tmp_path), tmp_path / "out")
    module = PreparedDataModule(tmp_path / "out", batch_size=32, seed=5)
    module.setup()
    split = module.splits["train" if train else "validation"]
    host = module.train_dataloader() if train else module.val_dataloader()
    order = EpochShuffle(split, 5) if train else torch.utils.data.SequentialSampler(split)
    batches = DeviceBatches(order, 32, drop_last=train, device=torch.device("cpu"))
    if train:
        host.sampler.set_epoch(3)
        order.set_epoch(3)
    device = torch.utils.data.DataLoader(split, batch_sampler=batches, collate_fn=lambda b: b)
    assert len(batches) == len(host) == (len(split) // 32 if train else -(-len(split) // 32))
    assert _same_batches(host, device)


def test_a_trainer_gets_the_same_batches_gathered_on_its_device_and_workers_keep_the_dataloader_way(tmp_path):
    host, module = _host_and_trainer_modules(tmp_path, "cpu")
    assert module.device == torch.device("cpu")
    loader = module.train_dataloader()
    assert isinstance(loader.batch_sampler, DeviceBatches) and isinstance(loader.batch_sampler.sampler, EpochShuffle)
    assert _same_batches(host.train_dataloader(), loader)
    workers = PreparedDataModule(tmp_path / "out", batch_size=32, num_workers=1)
    workers.trainer = module.trainer
    workers.setup()
    assert workers.device is None and workers.train_dataloader().num_workers == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_one_gpu_process_keeps_the_splits_on_the_gpu_with_the_same_batches(tmp_path):
    host, module = _host_and_trainer_modules(tmp_path, "gpu")
    assert module.device.type == "cuda"
    for loader in ("train_dataloader", "val_dataloader", "test_dataloader", "calibration_dataloader"):
        on_gpu = list(getattr(module, loader)())
        assert all(t.is_cuda for batch in on_gpu for t in batch)
        assert _same_batches(getattr(host, loader)(), on_gpu)


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


def write_cifar_batches(folder, per_batch: int = 4, test: int = 6, seed: int = 3) -> dict:
    """The CIFAR-10 python format: pickled dicts, b"data" rows of 1024 R, 1024 G, 1024 B values (row-major)."""
    import pickle

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    written = {}
    for name, n in [*((f"data_batch_{i}", per_batch) for i in range(1, 6)), ("test_batch", test)]:
        rgb = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        labels = list(rng.integers(0, 10, n))
        row = rgb.transpose(0, 3, 1, 2).reshape(n, 3072)
        (folder / name).write_bytes(pickle.dumps({b"data": row, b"labels": labels, b"batch_label": name.encode()}))
        written[name] = (rgb, labels)
    return written


def test_scifar_from_python_batches_is_grayscale_row_by_row_and_normalised(tmp_path):
    written = write_cifar_batches(tmp_path / "cifar" / "cifar-10-batches-py")
    config = config_for({"name": "scifar", "source": str(tmp_path / "cifar"), "val_size": 5}, tmp_path)
    prepared = data.build(config)
    assert prepared.x["train"].shape == (15, 1024, 1) and prepared.x["validation"].shape == (5, 1024, 1)
    assert prepared.x["test"].shape == (6, 1024, 1) and prepared.classes[0] == "airplane"
    rgb, labels = written["test_batch"]
    r, g, b = (rgb[2, 0, 1, c].astype(float) for c in range(3))  # test image 2, row 0, column 1 = step 1
    assert prepared.x["test"][2, 1, 0] == pytest.approx((0.299 * r + 0.587 * g + 0.114 * b - 122.6) / 61, abs=1e-5)
    r, g, b = (rgb[2, 1, 0].astype(float))  # row 1, column 0 = step 32
    assert prepared.x["test"][2, 32, 0] == pytest.approx((0.299 * r + 0.587 * g + 0.114 * b - 122.6) / 61, abs=1e-5)
    assert list(prepared.y["test"]) == labels
    train_labels = np.concatenate([written[f"data_batch_{i}"][1] for i in range(1, 6)])
    assert sorted([*prepared.y["train"], *prepared.y["validation"]]) == sorted(train_labels)
    again = data.build(config)
    assert np.array_equal(again.x["validation"], prepared.x["validation"])  # the split is fixed by the seed
    other = data.build(parse({**TINY, "seed": 1, "data": config.data.model_dump()}, base=tmp_path))
    assert not np.array_equal(other.y["validation"], prepared.y["validation"]) or \
        not np.array_equal(other.x["validation"], prepared.x["validation"])


def test_scifar_from_a_hub_format_folder_matches_the_python_batches(tmp_path):
    from datasets import ClassLabel, Dataset, Features, Image

    written = write_cifar_batches(tmp_path / "py")
    folder = tmp_path / "hub_cifar" / "plain_text"
    folder.mkdir(parents=True)
    features = Features({"img": Image(), "label": ClassLabel(num_classes=10)})
    train = [written[f"data_batch_{i}"] for i in range(1, 6)]
    for split, (rgb, labels) in (("train", (np.concatenate([t[0] for t in train]), sum((t[1] for t in train), []))),
                                 ("test", written["test_batch"])):
        Dataset.from_dict({"img": list(rgb), "label": [int(v) for v in labels]}, features=features) \
            .to_parquet(str(folder / f"{split}-00000-of-00001.parquet"))
    from_hub = data.build(config_for({"name": "scifar", "source": str(tmp_path / "hub_cifar"), "val_size": 5},
                                     tmp_path))
    from_batches = data.build(config_for({"name": "scifar", "source": str(tmp_path / "py"), "val_size": 5},
                                         tmp_path))
    for split in ("train", "validation", "test"):
        assert np.allclose(from_hub.x[split], from_batches.x[split], atol=1e-6)
        assert np.array_equal(from_hub.y[split], from_batches.y[split])


def test_missing_scifar_source_says_what_to_provide(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="CIFAR-10 python batches .*uoft-cs/cifar10"):
        data.build(config_for({"name": "scifar", "source": str(tmp_path / "nowhere")}, tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="HF_HUB_OFFLINE=0; or set data.source to a folder of the CIFAR-10"):
        data.build(config_for({"name": "scifar", "source": "uoft-cs/cifar10"}, tmp_path))


def traced(ink: np.ndarray, start: tuple[int, int]) -> np.ndarray:
    """The ink reachable from `start`, stepping across gaps of up to 2 px (a 5×5 neighbourhood)."""
    from scipy.ndimage import binary_dilation

    reached = np.zeros_like(ink)
    reached[start] = True
    while True:
        grown = binary_dilation(reached, np.ones((5, 5), dtype=bool)) & ink
        if (grown == reached).all():
            return reached
        reached = grown


def test_pathfinder_labels_follow_the_drawn_contour_and_are_balanced():
    from pipeline.data.pathfinder import generate

    for segments in (14, 9):  # 14 segments and 2 distractors: the crowded setting, grown with backtracking
        images, labels, dots = generate(120, segments=segments, distractors=2, seed=5)
        assert images.shape == (120, 32, 32) and set(np.unique(images)) == {0.0, 1.0}
        assert labels.sum() == 60  # exactly balanced
        for image, label, (a, b) in zip(images, labels, dots):
            assert image[tuple(a)] == 1 and image[tuple(b)] == 1
            assert traced(image > 0, tuple(a))[tuple(b)] == bool(label)
    again = generate(120, segments=9, distractors=2, seed=5)  # the same as the loop's last draw
    assert np.array_equal(again[0], images) and np.array_equal(again[1], labels)
    assert not np.array_equal(generate(120, segments=9, distractors=2, seed=6)[0], images)
    longer = generate(40, segments=14, distractors=1, seed=5)[0]
    assert longer.sum() > generate(40, segments=9, distractors=1, seed=5)[0].sum()  # more ink per contour


def test_pathfinder_dot_distance_does_not_give_the_label_away():
    from pipeline.data.pathfinder import generate

    _, labels, dots = generate(2000, segments=14, distractors=2, seed=1)
    distance = np.linalg.norm(dots[:, 0] - dots[:, 1], axis=1)
    best = max(max(((distance > t) == labels).mean(), ((distance <= t) == labels).mean())
               for t in np.unique(distance))
    assert best < 0.6  # the best threshold on the dots' distance alone (chance: 0.5)


def test_pathfinder_prepares_sequences_and_refuses_an_impossible_setting(tmp_path, monkeypatch):
    from pipeline.data import pathfinder

    config = config_for({"name": "pathfinder", "count": 200, "val_fraction": 0.1, "test_fraction": 0.2}, tmp_path)
    prepared = data.build(config)
    assert prepared.x["train"].shape == (140, 1024, 1) and len(prepared.y["test"]) == 40
    assert prepared.classes == ["different", "same"]
    monkeypatch.setattr(pathfinder, "RESTARTS", 2)  # the same refusal, sooner
    with pytest.raises(DataError, match="lower data.distractors or data.segments"):
        data.build(config_for({"name": "pathfinder", "count": 100, "segments": 20, "distractors": 10}, tmp_path))


def _damage(path, how: str) -> None:
    """missing: delete; truncated: keep the first third of the bytes; wrong: replace by text."""
    if how == "missing":
        path.unlink()
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[:max(1, path.stat().st_size // 3)])
    else:
        path.write_bytes(b"<html>not the data set</html>\n" * 20)


@pytest.mark.parametrize("how", ["missing", "truncated", "wrong"])
def test_damaged_mnist_file_is_named_with_what_to_do(idx_folder, tmp_path, how):
    target = idx_folder / "train-images-idx3-ubyte.gz"
    _damage(target, how)
    config = config_for({"name": "smnist", "source": str(idx_folder), "verify_checksum": False, "val_size": 5},
                        tmp_path)
    with pytest.raises(DataError, match="train-images-idx3-ubyte") as error:
        data.build(config)
    assert any(word in str(error.value) for word in ("replace", "expected the four"))


@pytest.mark.parametrize("how", ["missing", "truncated", "wrong"])
def test_damaged_cifar_batch_is_named_with_what_to_do(tmp_path, how):
    folder = tmp_path / "cifar" / "cifar-10-batches-py"
    write_cifar_batches(folder)
    _damage(folder / "data_batch_3", how)
    config = config_for({"name": "scifar", "source": str(tmp_path / "cifar"), "val_size": 5}, tmp_path)
    with pytest.raises(DataError, match="data_batch_3") as error:
        data.build(config)
    assert any(word in str(error.value) for word in ("replace", "holds"))


@pytest.mark.parametrize("how", ["missing", "truncated", "wrong"])
def test_damaged_fsdd_recording_is_named_with_what_to_do(fsdd_folder, tmp_path, how):
    target = fsdd_folder / "1_bob_6.wav"
    _damage(target, how)
    if how == "truncated":  # a third of a 44-byte header plus audio: the header itself is cut
        target.write_bytes(target.read_bytes()[:30])
    config = config_for({"name": "fsdd", "source": str(fsdd_folder), "subsample": 2, "length": 40}, tmp_path)
    if how == "missing":  # a missing take is simply not part of the data set
        assert len(data.build(config).y["train"]) + len(data.build(config).y["validation"]) == 3 * 2 * 3 - 1
        return
    with pytest.raises(DataError, match="1_bob_6.wav.*replace"):
        data.build(config)


def test_prepare_stage_ends_a_damaged_file_with_its_message_not_a_traceback(idx_folder, tmp_path):
    import subprocess
    import sys

    from conftest import ROOT, venv_env

    _damage(idx_folder / "t10k-labels-idx1-ubyte.gz", "truncated")
    params = {**TINY, "data": {"name": "smnist", "source": str(idx_folder), "verify_checksum": False, "val_size": 5},
              "tracking": {"enabled": False}}
    (tmp_path / "params.yaml").write_text(json.dumps(params))
    done = subprocess.run([sys.executable, str(ROOT / "stages" / "prepare.py"), "--out", "prepared", "--metrics",
                           "m.json"], cwd=tmp_path, capture_output=True, text=True, env=venv_env())
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "t10k-labels-idx1-ubyte.gz" in done.stderr and "replace" in done.stderr
