"""LightningDataModule over a prepared data set: the whole split is read once into memory as tensors, and kept on
the device that trains on it."""
from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, Sampler, SequentialSampler, TensorDataset

from pipeline.data import read_meta


class Split(TensorDataset):
    """(x, label) tensors; a batch of indices (a list, or a tensor on the split's device) is gathered at once
    instead of sample by sample."""

    def __getitems__(self, indices: list[int] | torch.Tensor) -> tuple[torch.Tensor, ...]:
        index = torch.as_tensor(indices)
        return tuple(t.index_select(0, index) for t in self.tensors)


def whole_batch(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """The collate function of a `Split`: its gathered batch as it is."""
    return batch


def load_split(data_dir: str | Path, split: str) -> Split:
    from datasets import load_from_disk

    columns = load_from_disk(str(Path(data_dir) / split)).with_format("torch")[:]
    return Split(columns["x"].float(), columns["label"].long())


class EpochShuffle(RandomSampler):
    """Shuffles with a permutation that depends only on (seed, epoch): a resumed run sees the same batches as an
    uninterrupted one. It is the permutation of torch's DistributedSampler, which Lightning puts in its place
    under DDP, so the union of the processes' batches equals the single-process batch."""

    def __init__(self, data_source, seed: int = 0):
        super().__init__(data_source)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        yield from torch.randperm(len(self.data_source), generator=generator).tolist()


class DeviceBatches(BatchSampler):
    """The batches of `sampler`'s order as index tensors on `device`: the epoch's order crosses to the device once
    and each batch is a slice of it, so gathering a batch from a split on that device needs no copy, pinning or
    host sync per step. A `BatchSampler`, so that Lightning can put DDP's distributed sampler in its place."""

    def __init__(self, sampler: Sampler, batch_size: int, drop_last: bool, device: torch.device | str = "cpu"):
        super().__init__(sampler, batch_size, drop_last)
        self.device = torch.device(device)

    def __iter__(self):
        order = torch.as_tensor(list(self.sampler)).to(self.device)
        yield from order[:len(self) * self.batch_size].split(self.batch_size)


def batch_device(trainer: L.Trainer | None, splits: dict[str, Split], num_workers: int) -> torch.device | None:
    """Where each process keeps the splits and gathers its batches: its trainer's device (a GPU only if the splits
    take at most a quarter of its memory), or None, in the DataLoader's way (`num_workers` worker processes, each
    batch pinned and copied to a GPU), without a trainer or with workers asked for."""
    if trainer is None or num_workers > 0:
        return None
    device = trainer.strategy.root_device
    if device.type != "cuda":
        return device
    size = sum(t.numel() * t.element_size() for split in splits.values() for t in split.tensors)
    return device if size <= torch.cuda.get_device_properties(device).total_memory / 4 else None


class PreparedDataModule(L.LightningDataModule):
    """`batch_size` is the global batch: each of W processes loads batch_size / W. Training drops the last
    incomplete batch, so every step sees the same number of samples with one process or several.

    Under a trainer (and with `num_workers` 0), each process keeps the splits on its device, a GPU's included
    (`batch_device`), and gathers each batch there (`DeviceBatches`): the same batches, without the host's per-step
    gathering, pinning and copying, which took longer than a captured training step on the GPU."""

    def __init__(self, data_dir: str | Path, batch_size: int = 64, num_workers: int = 0, seed: int = 0):
        super().__init__()
        self.data_dir, self.batch_size, self.num_workers, self.seed = Path(data_dir), batch_size, num_workers, seed
        self.meta = read_meta(self.data_dir)
        self.splits: dict[str, Split] = {}
        self.device: torch.device | None = None  # where batches are gathered (batch_device)

    def setup(self, stage: str | None = None) -> None:
        for split in ("train", "validation", "test"):
            if split not in self.splits:
                self.splits[split] = load_split(self.data_dir, split)
        device = batch_device(self.trainer, self.splits, self.num_workers)
        if device != self.device:
            self.splits = {name: Split(*(t.to(device or "cpu") for t in split.tensors))
                           for name, split in self.splits.items()}
            self.device = device

    def _per_process(self) -> int:
        """batch_size / processes (train.batch_size divides by train.devices: the config checks it)."""
        return self.batch_size // (self.trainer.world_size if self.trainer is not None else 1)

    def _loader(self, split: str, batch_size: int, train: bool = False) -> DataLoader:
        dataset = self.splits[split]
        order = EpochShuffle(dataset, self.seed) if train else None
        if self.device is not None:
            batches = DeviceBatches(order or SequentialSampler(dataset), batch_size, train, self.device)
            return DataLoader(dataset, batch_sampler=batches, collate_fn=whole_batch)
        return DataLoader(dataset, batch_size=batch_size, drop_last=train, collate_fn=whole_batch, sampler=order,
                          num_workers=self.num_workers, pin_memory=torch.cuda.is_available(),
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        if len(self.splits["train"]) < self.batch_size:
            raise ValueError(f"train.batch_size = {self.batch_size} is larger than the training split "
                             f"({len(self.splits['train'])} samples)")
        return self._loader("train", self._per_process(), train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", self._per_process())

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self._per_process())

    def calibration_dataloader(self) -> DataLoader:
        """Training data in its stored (already random) order, whole batches: the same on every run and process."""
        return self._loader("train", self.batch_size)
