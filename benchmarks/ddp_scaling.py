"""Data-parallel scaling of float pretraining: the same preset, global batch and epochs on 1, 2, … processes.

    python benchmarks/ddp_scaling.py --preset presets/smnist.yaml --source .device/mnist --epochs 4 \\
        --devices 1,2 [--cuda-graphs off] [--compile off] --out ddp.json

First one process without DDP (the reference), then Lightning's DDP (`train.strategy: ddp_spawn`) on each count,
every run with the preset's CUDA graphs and compile unless `--cuda-graphs off` / `--compile off` (each DDP
process captures its own compiled pass). Per run: the last epoch's training samples/s (the whole global batch
counted), test accuracy of the best-validation model, its rate over the reference's (`vs_single`) and the scaling
efficiency E(d) = rate(d)·d₀ / (d·rate(d₀)), d₀ the first count (1 by default). On a machine without GPUs the
processes are CPU processes (gloo).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from bench_config import Report, load_preset, prepared_data

from pipeline.training import fit_classifier


def device_counts(text: str) -> list[int]:
    """'1,2' → [1, 2]; each a positive integer, at most the GPUs present when there are any."""
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise SystemExit(f"--devices = {text!r}: expected positive integers separated by commas, e.g. 1,2")
    gpus = torch.cuda.device_count()
    if gpus and max(counts) > gpus:
        raise SystemExit(f"--devices = {text!r}: this machine has {gpus} GPU(s)")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="presets/smnist.yaml")
    parser.add_argument("--source", help="override data.source (e.g. a copy of the MNIST IDX files)")
    parser.add_argument("--epochs", type=int, default=4, help="float pretraining epochs of every run")
    parser.add_argument("--devices", default="1,2", help="process counts to run, e.g. 1,2")
    parser.add_argument("--cuda-graphs", choices=["on", "off"], default="on")
    parser.add_argument("--compile", choices=["on", "off"], default="on", help="torch.compile the captured pass")
    parser.add_argument("--out", type=Path, default=Path("ddp_scaling.json"))
    args = parser.parse_args()

    counts = device_counts(args.devices)
    config = load_preset(args.preset, args.epochs, args.source)
    report = Report(args.out, preset=args.preset, epochs=args.epochs, batch_size=config.train.batch_size,
                    gpus=torch.cuda.device_count())
    speed = {"cuda_graphs": args.cuda_graphs == "on", "compile": args.compile == "on"}

    def trained(name: str, **train) -> dict:
        setting = config.model_copy(update={"train": config.train.model_copy(update={**speed, **train})})
        return fit_classifier(setting, tmp / "prepared", tmp / name)[1]

    with prepared_data(config) as tmp:
        single = trained("single", devices=1, strategy="auto")
        report("single", single)
        per_process = None  # the first DDP run's samples/s per process
        for count in counts:
            metrics = trained(str(count), devices=count, strategy="ddp_spawn")
            rate = metrics["train/samples_per_s"]
            per_process = per_process or rate / count
            report(f"devices={count}", {**metrics, "vs_single": rate / single["train/samples_per_s"],
                                        "scaling_efficiency": rate / (count * per_process)})


if __name__ == "__main__":
    main()
