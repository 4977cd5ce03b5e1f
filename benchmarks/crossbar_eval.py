"""The whole chain on a preset (pretrain → QAT → prune → noise-aware fine-tune) and the crossbar evaluation:
accuracy per device and time beside the software accuracy, energy per inference, simulator speed.

    python benchmarks/crossbar_eval.py --preset presets/smnist.yaml --source .device/mnist \\
        --pretrain-epochs 3 --qat-epochs 2 --prune-epochs 1 --finetune-epochs 1 --workdir runs/bench --out out.json

The chain's checkpoints go to --keep and are reused when present, so a long chain can be split over calls.
Needs neither MLflow nor DVC.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench_config import Report, accelerator, keep_checkpoint, load_preset
from simulator_speed import sequences_per_s

from pipeline import data
from pipeline.data.datamodule import load_split
from pipeline.scoring import accuracy
from pipeline.steps.evaluate import crossbar_accuracy, duration, energy_metrics, layout_metrics
from pipeline.steps.finetune import finetune
from pipeline.steps.prune import prune_and_recover
from pipeline.steps.qat import compare, in_the_loop
from pipeline.training import ClassifierModule, fit_classifier


def cached(keep: Path, work: Path, name: str, made_with: dict, make):
    """keep/<name>.ckpt and its metrics (keep/chain.json) if there, else make(work/<name>) → (module, metrics)
    trained there, its best checkpoint kept. A folder whose chain was made with other settings (`made_with`) is
    refused, so that one preset's checkpoints are never evaluated as another's."""
    path, record = keep / f"{name}.ckpt", keep / "chain.json"
    chain = json.loads(record.read_text()) if record.is_file() else {"made_with": made_with}
    if chain.get("made_with") != made_with:
        raise SystemExit(f"{record}: its checkpoints were made with {chain.get('made_with')}, not {made_with}; "
                         "give another --keep (or --workdir)")
    if not path.is_file():
        _, chain[name] = make(work / name)
        keep_checkpoint(work / name, keep, name)
        record.write_text(json.dumps(chain, indent=1))
    return ClassifierModule.load(path), chain[name]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="presets/smnist.yaml")
    parser.add_argument("--source", help="override data.source")
    for stage, default in (("pretrain", 3), ("qat", 2), ("prune", 1), ("finetune", 1)):
        parser.add_argument(f"--{stage}-epochs", type=int, default=default)
    parser.add_argument("--devices", default="ideal,rram,pcm")
    parser.add_argument("--times", default="1,86400", help="seconds after programming, comma-separated")
    parser.add_argument("--sigma", type=float, help="override finetune.sigma")
    parser.add_argument("--qat-target", choices=["paper", "deploy", "chip"], help="override qat.target")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a param of the preset (repeatable), e.g. qat.chip_device=rram")
    parser.add_argument("--evaluate", default="finetune", choices=["finetune", "prune", "qat"],
                        help="the model evaluated")
    parser.add_argument("--mappings", default="full,residual",
                        help="tile mappings compared (evaluate.mapping, with ':<row gains>' for evaluate.row_gains, "
                             "e.g. full,full:inputs,residual:all)")
    parser.add_argument("--converter-bits", type=int, help="override evaluate.dac_bits and evaluate.adc_bits")
    parser.add_argument("--chips", type=int, help="override evaluate.chips")
    parser.add_argument("--test-samples", type=int, help="override evaluate.test_samples")
    parser.add_argument("--workdir", type=Path, default=Path("runs/bench"), help="prepared data, training runs")
    parser.add_argument("--keep", type=Path, help="the chain's checkpoints and metrics (default: --workdir)")
    parser.add_argument("--skip-evaluation", action="store_true", help="only train the chain")
    parser.add_argument("--out", type=Path, default=Path("crossbar_eval.json"))
    args = parser.parse_args()

    config = load_preset(args.preset, args.pretrain_epochs, args.source, args.set)
    overrides = {"devices": args.devices.split(","), "times": [float(t) for t in args.times.split(",")],
                 "chips": args.chips or config.evaluate.chips,
                 "test_samples": args.test_samples or config.evaluate.test_samples}
    if args.converter_bits:
        overrides |= {"dac_bits": args.converter_bits, "adc_bits": args.converter_bits}
    settings = config.evaluate.model_copy(update=overrides)
    trained_with = config.fingerprint()  # evaluation settings do not invalidate the kept checkpoints …
    config = config.model_copy(update={"evaluate": settings})  # … but target chip trains on these tiles
    on = accelerator()
    work, prepared, keep = args.workdir, args.workdir / "prepared", args.keep or args.workdir
    if not (prepared / "meta.json").is_file():
        data.prepare(config, prepared)
    report = Report(args.out, preset=args.preset, args=vars(args))

    qat = config.qat.model_copy(update={"epochs": args.qat_epochs, "target": args.qat_target or config.qat.target})
    prune = config.prune.model_copy(update={"epochs": args.prune_epochs})
    tune = config.finetune.model_copy(update={"epochs": args.finetune_epochs,
                                              "sigma": config.finetune.sigma if args.sigma is None else args.sigma})
    chip = in_the_loop(config, qat)
    made_with = {"config": trained_with, "qat": qat.model_dump(mode="json"), "chip": chip and chip.stored(),
                 "prune": prune.model_dump(mode="json"), "finetune": tune.model_dump(mode="json")}
    float_module, m = cached(keep, work, "pretrain", made_with, lambda w: fit_classifier(config, prepared, w))
    report("pretrain", m)
    models = {}
    models["qat"], m = cached(keep, work, "qat", made_with,
                              lambda w: compare(float_module, config, prepared, w, qat))
    report("qat", m)
    last = "finetune" if args.skip_evaluation else args.evaluate  # train no further than what is evaluated
    if last != "qat":
        models["prune"], m = cached(keep, work, "prune", made_with,
                                    lambda w: prune_and_recover(models["qat"].to(on), config, prepared, w, prune))
        report("prune", m)
    if last == "finetune":
        models["finetune"], m = cached(keep, work, "finetune", made_with,
                                       lambda w: finetune(models["prune"], config, prepared, w, tune))
        report("finetune", m)
    if args.skip_evaluation:
        return

    x, y = load_split(prepared, "test").tensors
    x, y = x[:settings.test_samples], y[:settings.test_samples]
    calibration = list(load_split(prepared, "train").tensors[0][:1024].split(256))
    tuned = models[args.evaluate].to(on)
    report("software_acc", accuracy(tuned.model, x, y, tuned.eval_mode))
    first = settings.devices[0]
    for mapping in args.mappings.split(","):
        name, _, rows = mapping.partition(":")
        mapped = settings.model_copy(update={"mapping": name, "row_gains": rows or "none"})
        start = time.perf_counter()
        curves, programs = crossbar_accuracy(tuned, x, y, calibration, mapped, config.seed, on)
        report(f"crossbar/{mapping}", {"curves": curves, "seconds": time.perf_counter() - start,
                                       "chips": settings.chips, "test_samples": len(x),
                                       "times": [duration(t) for t in settings.times]})
        report(f"layout/{mapping}", layout_metrics(programs[first]))
        report(f"energy/{mapping}", energy_metrics(tuned, programs[first], x.shape[1], mapped)[0])
    device = settings.device_settings()[first]
    report("speed", [sequences_per_s(tuned.model, programs[first], device, chips, settings.times[0], settings.dac_bits,
                                     settings.adc_bits, x[:max(1, settings.batch_size // chips)].to(on))
                     for chips in (1, 32)])


if __name__ == "__main__":
    main()
