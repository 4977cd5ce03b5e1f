"""Training speed and accuracy per epoch of a preset: float pretraining, then optionally QAT from the float model.

    python benchmarks/train_speed.py --preset presets/smnist.yaml --epochs 3 --qat-bits all=7 --qat-epochs 3 \\
        --cuda-graphs on --compile on --out speed.json

Per epoch: training samples/s and the test accuracy of the current weights. `--cuda-graphs off` trains eagerly, the
reference for the accuracy per epoch. Needs neither MLflow nor DVC, so it runs as-is on a bare GPU machine.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import lightning as L
import torch
from bench_config import device_name, load_preset, prepared_data

from pipeline.config import parse_bits
from pipeline.data import read_meta
from pipeline.steps.qat import quantized_copy
from pipeline.training import MemoryLogger, fit, fit_classifier


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
            correct += (module(x, module.eval_mode).argmax(-1) == y).sum().item()
            total += len(y)
        self.accuracy.append(correct / total)
        module.train()
        print(f"epoch {trainer.current_epoch + 1} test/acc={self.accuracy[-1]:.4f}", flush=True)


def timed_fit(run, name: str) -> dict:
    """run(callbacks, logger) → (module, metrics), with each epoch's metrics and test accuracy recorded."""
    logged, tested = MemoryLogger(), TestEachEpoch()
    start = time.perf_counter()
    module, metrics = run([tested], logged)
    history = [{"epoch": epoch + 1, **logged.epochs[epoch]} for epoch in sorted(logged.epochs)]
    for row, accuracy in zip(history, tested.accuracy):
        row["test/acc"] = accuracy
    print(name, json.dumps(metrics), flush=True)
    return module, {"final": metrics, "seconds": time.perf_counter() - start, "per_epoch": history}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="presets/smnist.yaml")
    parser.add_argument("--epochs", type=int, default=5, help="float pretraining epochs")
    parser.add_argument("--qat-bits", help="e.g. all=7: QAT from the float model at these bits")
    parser.add_argument("--qat-epochs", type=int, default=3)
    parser.add_argument("--cuda-graphs", choices=["on", "off"], default="on")
    parser.add_argument("--compile", choices=["on", "off"], default="on", help="torch.compile the captured pass")
    parser.add_argument("--source", help="override data.source (e.g. a copy of the MNIST IDX files)")
    parser.add_argument("--out", type=Path, default=Path("train_speed.json"))
    args = parser.parse_args()

    config = load_preset(args.preset, args.epochs, args.source)
    train = config.train.model_copy(update={"cuda_graphs": args.cuda_graphs == "on", "compile": args.compile == "on"})
    config = config.model_copy(update={"train": train})
    result = {"preset": args.preset, "model": config.model.model_dump(), "batch_size": config.train.batch_size,
              "cuda_graphs": args.cuda_graphs, "compile": args.compile, "device": device_name(),
              "torch": torch.__version__}
    start = time.perf_counter()
    with prepared_data(config) as tmp:
        result |= {"data": read_meta(tmp / "prepared")["name"], "prepare_seconds": time.perf_counter() - start}
        float_module, result["float"] = timed_fit(
            lambda callbacks, logger: fit_classifier(config, tmp / "prepared", tmp / "float", logger, callbacks),
            "float")
        if args.qat_bits:
            bits = parse_bits(args.qat_bits.split(","))
            qat = config.qat.model_copy(update={"bits": bits, "epochs": args.qat_epochs})
            quantized = quantized_copy(float_module, qat)
            _, result["qat"] = timed_fit(
                lambda callbacks, logger: fit(quantized, config, qat, tmp / "prepared", tmp / "qat", logger, callbacks),
                f"qat {args.qat_bits}")
            result["qat"]["bits"] = qat.bits
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
