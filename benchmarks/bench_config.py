"""Shared by the benchmark scripts: a preset with overrides, tracking off, the device, results written as they
come, keeping a run's best checkpoint between GPU calls, and a preset's model for step-level measurements."""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
import yaml

from pipeline import data
from pipeline.config import Config, parse, parse_bits
from pipeline.model import S4DClassifier
from pipeline.quant import quantize


def load_preset(preset: str | Path, pretrain_epochs: int, source: str | None = None,
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
        if not name and section in raw and value and not isinstance(raw[section], dict):
            raw[section] = yaml.safe_load(value)  # a top-level key, e.g. seed=1
            continue
        if not (section in raw and name and value):
            raise SystemExit(f"override {override!r}: expected key=value or section.key=value with a key of "
                             f"{sorted(raw)}")
        raw[section][name] = yaml.safe_load(value)
    config = parse(raw, origin=str(preset), base=preset.resolve().parent)
    torch.set_float32_matmul_precision(config.train.matmul_precision)  # as the stages do
    return config


@contextmanager
def prepared_data(config: Config) -> Iterator[Path]:
    """A temporary working folder, removed afterwards, with the preset's data prepared in <folder>/prepared."""
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        data.prepare(config, folder / "prepared")
        yield folder


def accelerator() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def device_name() -> str:
    return torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"


class Report(dict):
    """A run's results, printed and written to `out` as each one comes, so a cut-off run keeps what it finished;
    it starts with `header`, the device and torch's version."""

    def __init__(self, out: Path, **header):
        super().__init__(**header, device=device_name(), torch=torch.__version__)
        self.out = out

    def __call__(self, key: str, value) -> None:
        self[key] = value
        print(key, json.dumps(value), flush=True)
        self.out.write_text(json.dumps(self, indent=2, default=str))


def keep_checkpoint(run: Path, folder: Path | None, name: str) -> None:
    """Copy the training run's best checkpoint to folder/<name>.ckpt (nothing when folder is None)."""
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run / "best.ckpt", folder / f"{name}.ckpt")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--preset, --seq-len, --classes, --bits: the model of `preset_model`."""
    parser.add_argument("--preset", default="presets/smnist.yaml")
    parser.add_argument("--seq-len", type=int, default=784)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--bits", help="e.g. all=7 (default: float)")


def preset_model(args: argparse.Namespace, **model_overrides) -> tuple[Config, S4DClassifier]:
    """The preset's params and its model for one input channel, quantized at `--bits` when given."""
    config = load_preset(args.preset, 1)
    model = S4DClassifier(1, args.classes, **{**config.model.model_dump(), **model_overrides})
    if args.bits:
        quantize(model, parse_bits(args.bits.split(",")))
    return config, model
