"""Noise robustness and structured pruning of a float and a QAT model (QS4D's two robustness comparisons).

    python benchmarks/noise_prune.py --preset presets/smnist.yaml --source .device/mnist \\
        --float float.ckpt --qat qat_all7.ckpt --finetune-sigma 0.01 --finetune-epochs 2 --out noise_prune.json

1. Test accuracy under analog weight noise (σ_rel of a tensor's range, `--sigmas`, `--draws` seeded draws each)
   of the float model, the QAT model, and the QAT model after noise-aware fine-tuning (under
   `--finetune-protocol`), for each noise protocol of `--protocols` (`crossbar`: Ā, B̄, C, D; `paper`: QS4D's,
   the continuous A).
2. Unless `--no-prune`: the fraction of state modes that structured pruning (skip-on-failure) removes from the float and
   from the QAT model at `--tolerance` validation accuracy, without recovery training.
Needs neither MLflow nor DVC.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench_config import Report, accelerator, load_preset, prepared_data

from pipeline.data.datamodule import load_split
from pipeline.prune.search import prune
from pipeline.steps.finetune import finetune, robustness
from pipeline.steps.prune import pruned_copy
from pipeline.training import ClassifierModule


def structured_fraction(module: ClassifierModule, x_val, y_val, tolerance: float, on: str) -> dict:
    copy = pruned_copy(module).to(on)
    search = prune(copy.model, x_val, y_val, copy.eval_mode, tolerance, ("structured",))
    total = sum(m.mode.keep.numel() for m in search["layers"])
    return {"structured_frac": search["removed"]["structured"] / total,
            "val_acc_before": search["baseline_val_acc"], "val_acc_after": search["val_acc"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="presets/smnist.yaml")
    parser.add_argument("--source", help="override data.source")
    parser.add_argument("--float", type=Path, required=True, help="float checkpoint")
    parser.add_argument("--qat", type=Path, required=True, help="QAT checkpoint")
    parser.add_argument("--sigmas", default="0,0.005,0.01,0.015,0.02")
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--finetune-sigma", type=float, default=0.01)
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--finetune-protocol", default="crossbar", choices=["crossbar", "paper"])
    parser.add_argument("--protocols", default="crossbar", help="noise protocols of the curves, comma-separated")
    parser.add_argument("--no-prune", action="store_true", help="skip the pruning comparison")
    parser.add_argument("--tolerance", type=float, default=0.01)
    parser.add_argument("--out", type=Path, default=Path("noise_prune.json"))
    args = parser.parse_args()

    config = load_preset(args.preset, 1, args.source)
    on = accelerator()
    sigmas = [float(s) for s in args.sigmas.split(",")]
    report = Report(args.out, preset=args.preset, args=vars(args))

    models = {name: ClassifierModule.load(path) for name, path in (("float", args.float), ("qat", args.qat))}
    with prepared_data(config) as tmp:
        prepared = tmp / "prepared"
        x_val, y_val = load_split(prepared, "validation").tensors
        x, y = load_split(prepared, "test").tensors
        tune = config.finetune.model_copy(update={"sigma": args.finetune_sigma, "epochs": args.finetune_epochs,
                                                  "noise_protocol": args.finetune_protocol})
        start = time.perf_counter()
        models["finetuned"], metrics = finetune(models["qat"], config, prepared, tmp / "finetune", tune)
        report("finetune", {**metrics, "sigma": args.finetune_sigma, "seconds": time.perf_counter() - start})
        for protocol in args.protocols.split(","):
            for name, module in models.items():
                report(f"noise/{protocol}/{name}", robustness(module.to(on), x, y, sigmas, args.draws, config.seed,
                                                              protocol))
        for name in () if args.no_prune else ("float", "qat"):
            report(f"prune/{name}", structured_fraction(models[name], x_val, y_val, args.tolerance, on))


if __name__ == "__main__":
    main()
