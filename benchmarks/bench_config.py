"""Shared by the benchmark scripts: a preset with overrides, tracking off, the device's name, and keeping a run's
best checkpoint between GPU calls."""
from __future__ import annotations

import platform
import shutil
from pathlib import Path
from typing import Optional, Sequence

import torch
import yaml

from pipeline.config import Config, parse


def load_preset(preset: str | Path, pretrain_epochs: int, source: Optional[str] = None,
                overrides: Sequence[str] = ()) -> Config:
    """The preset's params with `pretrain.epochs` set, tracking off, optionally another data source, and
    `section.key=value` overrides (the value read as YAML)."""
    preset = Path(preset)
    raw = yaml.safe_load(preset.read_text())
    raw["pretrain"]["epochs"] = pretrain_epochs
    raw["tracking"] = {"enabled": False}
    if source:
        raw["data"]["source"] = str(Path(source).resolve())
    for override in overrides:
        key, _, value = override.partition("=")
        section, _, name = key.partition(".")
        if not (section in raw and name and value):
            raise SystemExit(f"override {override!r}: expected section.key=value with a section of {sorted(raw)}")
        raw[section][name] = yaml.safe_load(value)
    torch.set_float32_matmul_precision("high")
    return parse(raw, origin=str(preset), base=preset.resolve().parent)


def device_name() -> str:
    return torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"


def keep_checkpoint(run: Path, folder: Optional[Path], name: str) -> None:
    """Copy the training run's best checkpoint to folder/<name>.ckpt (nothing when folder is None)."""
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run / "best.ckpt", folder / f"{name}.ckpt")
