"""Which device error costs a crossbar model its accuracy: the chips' drawn conductances kept on one tensor of one
S4D layer (Ā, B̄, C or D, `mapping.tensor_cells`) and every other cell at its programmed target, without read
noise; then read noise alone, and everything together. The same draws in every row (one seeded generator), so the
rows differ only in where the errors are.

    python benchmarks/error_attribution.py --preset params.yaml --checkpoint runs/ft_s0/finetune.ckpt \\
        --data runs/ft_s0/prepared --device rram --times 1,86400 --chips 8 --out error_attribution.json

Needs neither MLflow nor DVC; runs on a GPU if there is one.
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
from bench_config import Report, load_preset

from pipeline.analog.calibration import program_all
from pipeline.analog.device_model import Chips
from pipeline.analog.mapping import tensor_cells
from pipeline.analog.simulator import CrossbarSSM
from pipeline.analog.tile_read import with_layers
from pipeline.data.datamodule import load_split
from pipeline.scoring import accuracy, copy_accuracies
from pipeline.steps.evaluate import duration, range_batches, tile_ranges
from pipeline.training import ClassifierModule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="params.yaml", help="its evaluate section: tiles, converters, mapping")
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="the prepared data folder")
    parser.add_argument("--device", default="rram")
    parser.add_argument("--times", default="1,86400", help="seconds after programming, comma-separated")
    parser.add_argument("--chips", type=int, default=8)
    parser.add_argument("--test-samples", type=int)
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--out", type=Path, default=Path("error_attribution.json"))
    args = parser.parse_args()

    config = load_preset(args.preset, 1, overrides=args.set)
    settings, on = config.evaluate, "cuda" if torch.cuda.is_available() else "cpu"
    device = settings.device(args.device)
    module = ClassifierModule.load(args.checkpoint)
    model = module.model.to(on).eval()
    x, y = load_split(args.data, "test").tensors
    x, y = x[:args.test_samples or settings.test_samples], y[:args.test_samples or settings.test_samples]
    calibration = range_batches(load_split(args.data, "train").tensors[0], config.train.batch_size)
    programs = program_all(tile_ranges(model, calibration, settings), device)
    report = Report(args.out, checkpoint=str(args.checkpoint), chip_device=args.device, chips=args.chips,
                    test_samples=len(x), software_acc=accuracy(model, x, y, module.eval_mode))

    def chip_accuracy(weights, read_std) -> dict[str, float]:
        layers = [CrossbarSSM(p, w, s, settings.dac_bits, settings.adc_bits) for p, w, s in zip(programs, weights,
                                                                                                read_std)]
        chips = with_layers(model, layers).to(device=on, dtype=next(model.parameters()).dtype)
        torch.manual_seed(config.seed)  # read noise
        accs = copy_accuracies(chips, x, y, args.chips, settings.batch_size).tolist()
        return {"mean": statistics.fmean(accs), "std": statistics.pstdev(accs), "min": min(accs)}

    for t in (float(v) for v in args.times.split(",")):
        generator = torch.Generator().manual_seed(config.seed)  # the same draws for every time and row
        drawn = [Chips(p, device, args.chips, generator).weights(t) for p in programs]
        target = [p.per_dac_unit().to(w).expand_as(w) for p, (w, _) in zip(programs, drawn)]
        quiet = [torch.zeros_like(s) for _, s in drawn]
        rows = {"ideal": chip_accuracy(target, quiet),
                "all errors": chip_accuracy([w for w, _ in drawn], [s for _, s in drawn]),
                "read noise only": chip_accuracy(target, [s for _, s in drawn])}
        for layer, ((w, _), p) in enumerate(zip(drawn, programs)):
            for name, cells in tensor_cells(*p.g_plus.shape[-2:]).items():
                mixed = list(target)
                mixed[layer] = torch.where(cells.to(w.device), w, target[layer])
                rows[f"layer {layer} {name}"] = chip_accuracy(mixed, quiet)
        for name, point in rows.items():
            print(f"{args.device} {duration(t)} {name}: {point['mean']:.4f} ± {point['std']:.4f}", flush=True)
        report(duration(t), rows)


if __name__ == "__main__":
    main()
