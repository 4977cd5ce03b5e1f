"""Float pretraining speed and accuracy of a preset, per epoch: training samples/s and test accuracy.

    python benchmarks/train_speed.py --preset presets/smnist.yaml --epochs 5 --out results.json

Runs without MLflow or DVC (only torch, lightning, pydantic, datasets), so it runs as-is on a bare GPU machine.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from bench_config import device_name, load_preset

from pipeline import data
from pipeline.training import fit_classifier


class TestEachEpoch(L.Callback):
    """Accuracy of the current weights on the test split after every training epoch."""

    def __init__(self):
        self.accuracy: list[float] = []

    @torch.no_grad()
    def on_train_epoch_end(self, trainer, module):
        module.eval()
        correct = total = 0
        for x, y in trainer.datamodule.test_dataloader():
            x, y = x.to(module.device), y.to(module.device)
            correct += (module(x).argmax(-1) == y).sum().item()
            total += len(y)
        self.accuracy.append(correct / total)
        module.train()
        print(f"epoch {trainer.current_epoch + 1} test/acc={self.accuracy[-1]:.4f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="presets/smnist.yaml")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--source", help="override data.source (e.g. a copy of the MNIST IDX files)")
    parser.add_argument("--out", type=Path, default=Path("train_speed.json"))
    args = parser.parse_args()

    config = load_preset(args.preset, args.epochs, args.source)

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        meta = data.prepare(config, Path(tmp) / "prepared")
        prepare_seconds = time.perf_counter() - start
        history, per_epoch_test = [], TestEachEpoch()
        _, metrics = fit_classifier(config, Path(tmp) / "prepared", Path(tmp) / "work", callbacks=[per_epoch_test],
                                    sink=lambda m, epoch: history.append({"epoch": epoch + 1, **m}))

    for row, acc in zip(history, per_epoch_test.accuracy):
        row["test/acc"] = acc
    result = {
        "preset": args.preset, "data": meta["name"], "model": config.model.model_dump(),
        "batch_size": config.train.batch_size, "epochs": args.epochs, "prepare_seconds": prepare_seconds,
        "device": device_name(),
        "torch": torch.__version__, "final": metrics, "per_epoch": history,
    }
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("device", "torch", "final")}, indent=2))


if __name__ == "__main__":
    main()
