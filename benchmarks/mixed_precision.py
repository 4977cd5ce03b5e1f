"""Greedy per-component bit descent on a preset, without MLflow or DVC (e.g. on a bare GPU machine):

    python benchmarks/mixed_precision.py --preset presets/mnist1d.yaml --pretrain-epochs 20 --start-bits 6 \\
        --cost ace --out out.json --plot out.png

Trains the float model (or reuses --keep/float.ckpt), runs the search of pipeline/steps/mixed_precision.py with the
preset's `mixed_precision` section and the overrides given here, and writes the result JSON (path, rounds,
final bits, seconds) and its plot.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from bench_config import device_name, load_preset

from pipeline import data
from pipeline.plots import plot_bit_descent
from pipeline.steps.mixed_precision import search
from pipeline.training import ClassifierModule, fit_classifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="presets/mnist1d.yaml")
    parser.add_argument("--source", help="data folder for presets that read files")
    parser.add_argument("--pretrain-epochs", type=int, default=20)
    parser.add_argument("--start-bits", type=int)
    parser.add_argument("--min-bits", type=int)
    parser.add_argument("--cost", choices=["ace", "size_bits", "adc", "energy"])
    parser.add_argument("--tolerance", type=float)
    parser.add_argument("--epochs", type=int, help="QAT epochs per candidate")
    parser.add_argument("--components", nargs="+", help="searched components (default: the preset's)")
    parser.add_argument("--workdir", default="runs/bench_mixed_precision")
    parser.add_argument("--keep", help="folder for the float checkpoint, reused when present")
    parser.add_argument("--out", default="mixed_precision.json")
    parser.add_argument("--plot", default="mixed_precision.png")
    args = parser.parse_args()

    config = load_preset(args.preset, args.pretrain_epochs, args.source)
    overrides = {k: v for k, v in {"start_bits": args.start_bits, "min_bits": args.min_bits, "cost": args.cost,
                                    "tolerance": args.tolerance, "epochs": args.epochs,
                                    "components": args.components}.items() if v is not None}
    settings = config.mixed_precision.model_validate({**config.mixed_precision.model_dump(), **overrides})
    train = config.train.model_copy(update={"accelerator": "auto"})
    config = config.model_copy(update={"mixed_precision": settings, "train": train})
    work = Path(args.workdir)
    data.prepare(config, work / "prepared")
    keep = Path(args.keep) if args.keep else work
    float_ckpt = keep / "float.ckpt"
    start = time.perf_counter()
    if not float_ckpt.is_file():
        _, metrics = fit_classifier(config, work / "prepared", work / "float")
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(work / "float" / "best.ckpt", float_ckpt)
        print(f"float: test/acc {metrics['test/acc']:.4f}", flush=True)
    float_module = ClassifierModule.load(float_ckpt)
    searched = time.perf_counter()
    result = search(float_module, config, work / "prepared", work / "search")
    result |= {"settings": settings.model_dump(), "device": device_name(),
               "seconds": {"float": searched - start, "search": time.perf_counter() - searched},
               "candidates": 1 + sum(len(r["candidates"]) for r in result["rounds"])}
    Path(args.out).write_text(json.dumps(result, indent=1))
    plot_bit_descent(result, args.plot)
    final = result["final"]
    print(f"final {final['bits']}: val/acc {final['val_acc']:.4f}, test/acc {final['test_acc']:.4f}, "
          f"{result['cost']} ÷{final['cost_reduction']:.2f}; {result['candidates']} candidates in "
          f"{result['seconds']['search']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
