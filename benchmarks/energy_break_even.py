"""Where the analog path wins on energy: a preset's model mapped onto its tiles, its energy per inference for each
mapping, input encoding and converter width, against the same model on digital int8 and fp32 logic.

    python benchmarks/energy_break_even.py --preset presets/smnist.yaml --set "qat.bits={all: 4, A: 8}" \\
        --out energy_break_even.json

The tile counts are those of the preset's model with every mode live (a model before pruning); the cells' share is
an upper bound at full-scale inputs and depends on the weights only through Σ G (here a random initialisation, a
fraction of a percent of the total). Prints one markdown table per mapping and, per encoding, the widest converters
(DAC = ADC bits) at which the analog chip still uses less energy than digital int8, with the parts that then
dominate. No training, no data set; CPU in seconds.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from bench_config import load_preset

from pipeline.analog.calibration import measure, program_all
from pipeline.analog.devices import PRESETS
from pipeline.cost import energy
from pipeline.cost.proxies import widths
from pipeline.model import S4DClassifier
from pipeline.steps.evaluate import energy_shape, tile_counts
from pipeline.steps.qat import quantization

BITS = (4, 6, 8, 10, 12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="presets/smnist.yaml")
    parser.add_argument("--length", type=int, help="sequence length (default: the preset's data)")
    parser.add_argument("--d-in", type=int, default=1)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--out", type=Path, default=Path("energy_break_even.json"))
    args = parser.parse_args()

    config = load_preset(args.preset, 1, overrides=args.set)
    length = args.length or {"smnist": 784, "psmnist": 784, "mnist1d": 40}.get(config.data.name)
    if length is None:
        raise SystemExit(f"--length: the preset's data {config.data.name!r} has no known length; give it")
    torch.manual_seed(config.seed)
    model = S4DClassifier(args.d_in, args.classes, **config.model.model_dump())
    quantization(config.qat).attach(model)
    bits = widths(config.qat.bits)
    settings = config.evaluate
    probe = [torch.randn(2, length, args.d_in)]
    rows = []
    for mapping in ("full", "residual"):
        measured = measure(model.eval(), probe, settings.tile_rows, settings.tile_cols, settings.range_margin, mapping)
        programs = program_all(measured, PRESETS[settings.devices[0]])
        counts = tile_counts(programs)
        shape = energy_shape(args.d_in, args.classes, config.model.model_dump(), programs, length)
        int8, fp32 = sum(energy.digital(shape, 8).values()), sum(energy.digital(shape, None).values())
        for encoding in energy.ENCODINGS:
            for b in BITS:
                parts = energy.analog(shape, counts, bits, b, b, settings.read_voltage, settings.read_time,
                                      mapping == "residual", encoding)
                total = sum(parts.values())
                rows.append({"mapping": mapping, "encoding": encoding, "bits": b, "pj": total,
                             "ratio_int8": int8 / total, "ratio_fp32": fp32 / total, "parts": parts})
    print(f"digital int8 {int8 / 1e6:.3f} µJ, fp32 {fp32 / 1e6:.3f} µJ per inference")
    for mapping in ("full", "residual"):
        print(f"\n{mapping}: µJ per inference (÷ int8, ÷ fp32), DAC = ADC bits\n")
        print("| encoding | " + " | ".join(f"{b} bits" for b in BITS) + " |")
        print("| --- |" + " ---: |" * len(BITS))
        for encoding in energy.ENCODINGS:
            cells = [f"{r['pj'] / 1e6:.3g} ({r['ratio_int8']:.2f}, {r['ratio_fp32']:.2f})" for r in rows
                     if r["mapping"] == mapping and r["encoding"] == encoding]
            print(f"| {encoding} | " + " | ".join(cells) + " |")
        for encoding in energy.ENCODINGS:
            wins = [r for r in rows if r["mapping"] == mapping and r["encoding"] == encoding and r["ratio_int8"] > 1]
            if not wins:
                print(f"{encoding}: above digital int8 at every width")
                continue
            best = max(wins, key=lambda r: r["bits"])
            top = sorted(best["parts"].items(), key=lambda kv: -kv[1])[:3]
            print(f"{encoding}: below digital int8 up to {best['bits']} bits; largest parts there: "
                  + ", ".join(f"{k} {v / best['pj']:.0%}" for k, v in top))
    args.out.write_text(json.dumps({"preset": args.preset, "overrides": args.set, "length": length,
                                    "digital_int8_pj": int8, "digital_fp32_pj": fp32, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
