"""The training chain under the default protocols or under the authors' (the overlay presets/overlays/qs4d.yaml):
float pretraining, PTQ and QAT, pruning with its recovery fine-tune → one JSON of metrics.

    python benchmarks/protocol_chains.py --preset presets/smnist.yaml --source .device/mnist --protocols qs4d \\
        --pretrain-epochs 3 --set qat.epochs=3 --set prune.epochs=1 --out qs4d.json

`--protocols qs4d` sets every key of the overlay (as `python -m pipeline.presets <preset>+qs4d` does), then the
`--set` items. Needs neither MLflow nor DVC.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench_config import Report, accelerator, load_preset, prepared_data

from pipeline.presets import overrides
from pipeline.steps.prune import prune_and_recover
from pipeline.steps.qat import compare
from pipeline.training import fit_classifier

OVERLAYS = Path(__file__).resolve().parent.parent / "presets" / "overlays"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="presets/smnist.yaml")
    parser.add_argument("--source", help="override data.source")
    parser.add_argument("--protocols", default="ours", choices=["ours", "qs4d"])
    parser.add_argument("--pretrain-epochs", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], help="section.key=value, after the overlay")
    parser.add_argument("--out", type=Path, default=Path("protocol_chain.json"))
    args = parser.parse_args()

    overlay = overrides(OVERLAYS / "qs4d.yaml") if args.protocols == "qs4d" else []
    config = load_preset(args.preset, args.pretrain_epochs, args.source, [*overlay, *args.set])
    report = Report(args.out, preset=args.preset, protocols=args.protocols, overrides=[*overlay, *args.set])
    with prepared_data(config) as tmp:
        prepared = tmp / "prepared"
        start = time.perf_counter()
        float_module, metrics = fit_classifier(config, prepared, tmp / "pretrain")
        report("pretrain", {**metrics, "seconds": time.perf_counter() - start})
        start = time.perf_counter()
        qat_module, metrics = compare(float_module, config, prepared, tmp / "qat")
        report("qat", {**metrics, "seconds": time.perf_counter() - start})
        start = time.perf_counter()
        _, metrics = prune_and_recover(qat_module.to(accelerator()), config, prepared, tmp / "prune")
        report("prune", {**metrics, "seconds": time.perf_counter() - start})


if __name__ == "__main__":
    main()
