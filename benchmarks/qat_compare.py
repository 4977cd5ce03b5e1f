"""Float vs PTQ vs QAT on a preset, for several bit settings: accuracies, cost reductions, QAT samples/s.

    python benchmarks/qat_compare.py --preset presets/smnist.yaml --pretrain-epochs 6 --qat-epochs 3 \\
        --bits all=4 --bits all=2 --bits all=4,A=1,C=1 --out qat.json

`--keep DIR` keeps the float and each QAT model's best checkpoint there (float.ckpt, qat_<bits>.ckpt); `--float
CKPT` starts from a kept float model instead of pretraining. Needs neither MLflow nor DVC, so it runs as-is on a
bare GPU machine.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from bench_config import device_name, keep_checkpoint, load_preset, prepared_data

from pipeline.config import parse_bits
from pipeline.steps.qat import compare
from pipeline.training import ClassifierModule, evaluate, fit_classifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="presets/smnist.yaml")
    parser.add_argument("--source", help="override data.source (e.g. a copy of the MNIST IDX files)")
    parser.add_argument("--set", action="append", default=[], help="section.key=value, e.g. data.segments=14")
    parser.add_argument("--pretrain-epochs", type=int, default=6)
    parser.add_argument("--qat-epochs", type=int, default=3)
    parser.add_argument("--qat-lr", type=float, help="override qat.lr")
    parser.add_argument("--target", default="paper", choices=["paper", "deploy"])
    parser.add_argument("--bits", action="append", required=True, help="e.g. all=4,A=1,C=1 (repeatable)")
    parser.add_argument("--keep", type=Path, help="folder for the best checkpoints")
    parser.add_argument("--float", type=Path, help="a float checkpoint to start from (skips pretraining)")
    parser.add_argument("--out", type=Path, default=Path("qat_compare.json"))
    args = parser.parse_args()

    config = load_preset(args.preset, args.pretrain_epochs, args.source, args.set)
    results = {"preset": args.preset, "device": device_name(), "torch": torch.__version__, "runs": []}
    with prepared_data(config) as tmp:
        if args.float:
            float_module = ClassifierModule.load(args.float)
            float_metrics = {"checkpoint": str(args.float), **evaluate(float_module, config, tmp / "prepared")}
        else:
            float_module, float_metrics = fit_classifier(config, tmp / "prepared", tmp / "pretrain")
            keep_checkpoint(tmp / "pretrain", args.keep, "float")
        results["float"] = float_metrics
        print("float", json.dumps(float_metrics), flush=True)
        for setting in args.bits:
            bits = parse_bits(setting.split(","))
            qat = config.qat.model_copy(update={"bits": bits, "epochs": args.qat_epochs, "target": args.target,
                                                "lr": args.qat_lr or config.qat.lr})
            start = time.perf_counter()
            _, metrics = compare(float_module, config, tmp / "prepared", tmp / f"qat-{setting}", qat)
            metrics["seconds"] = time.perf_counter() - start
            keep_checkpoint(tmp / f"qat-{setting}", args.keep, "qat_" + setting.replace("=", "").replace(",", "_"))
            results["runs"].append({"bits": bits, "target": args.target, **metrics})
            print(setting, json.dumps(metrics), flush=True)
            args.out.write_text(json.dumps(results, indent=2))
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
