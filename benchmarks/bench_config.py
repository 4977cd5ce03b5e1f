"""Shared by the benchmark scripts: a preset with overrides, tracking off, the device's name, and keeping a run's
best checkpoint between GPU calls."""
from __future__ import annotations

import platform
import shutil
from pathlib import Path
from typing import Optional

import torch
import yaml

from pipeline.config import Config, parse


def load_preset(preset: str | Path, pretrain_epochs: int, source: Optional[str] = None) -> Config:
    """The preset's params with `pretrain.epochs` set, tracking off, and optionally another data source."""
    preset = Path(preset)
    raw = yaml.safe_load(preset.read_text())
    raw["pretrain"]["epochs"] = pretrain_epochs
    raw["tracking"] = {"enabled": False}
    if source:
        raw["data"]["source"] = str(Path(source).resolve())
    torch.set_float32_matmul_precision("high")
    return parse(raw, origin=str(preset), base=preset.resolve().parent)


def device_name() -> str:
    return torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"


def keep_checkpoint(run: Path, folder: Optional[Path], name: str) -> None:
    """Copy the training run's best checkpoint to folder/<name>.ckpt (nothing when folder is None)."""
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run / "best.ckpt", folder / f"{name}.ckpt")
