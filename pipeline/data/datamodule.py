"""LightningDataModule over a prepared data set: the whole split is read once into memory as tensors."""
from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from pipeline.data import read_meta


def load_split(data_dir: str | Path, split: str) -> TensorDataset:
    from datasets import load_from_disk

    columns = load_from_disk(str(Path(data_dir) / split)).with_format("torch")[:]
    return TensorDataset(columns["x"].float(), columns["label"].long())


class PreparedDataModule(L.LightningDataModule):
    def __init__(self, data_dir: str | Path, batch_size: int = 64, num_workers: int = 0):
        super().__init__()
        self.data_dir, self.batch_size, self.num_workers = Path(data_dir), batch_size, num_workers
        self.meta = read_meta(self.data_dir)
        self.splits: dict[str, TensorDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        for split in ("train", "validation", "test"):
            if split not in self.splits:
                self.splits[split] = load_split(self.data_dir, split)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(self.splits[split], batch_size=self.batch_size, shuffle=shuffle,
                          num_workers=self.num_workers, pin_memory=torch.cuda.is_available(),
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def calibration_dataloader(self) -> DataLoader:
        """Training data in its stored (already random) order: the same batches on every run."""
        return self._loader("train", shuffle=False)
