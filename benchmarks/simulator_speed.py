"""Crossbar simulator speed: simulated sequences (samples × chips) per second for a checkpoint's model on the
RRAM preset with 12-bit converters, read noise on, inputs of random data.

    python benchmarks/simulator_speed.py --checkpoint qat.ckpt --seq-len 784 --batch 4096 --chips 1,32 [--eager]

`--eager` runs each step's kernels one by one instead of the compiled step (the path used on CPUs).
"""
from __future__ import annotations

import argparse
import json
import time

import torch
from bench_config import device_name

from pipeline.analog import simulator
from pipeline.analog.devices import PRESETS
from pipeline.config import EvaluateConfig
from pipeline.training import ClassifierModule


def timed(run) -> float:
    torch.cuda.synchronize()
    start = time.perf_counter()
    run()
    torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--seq-len", type=int, default=784)
    parser.add_argument("--batch", type=int, default=4096, help="sequences × chips per forward pass")
    parser.add_argument("--chips", default="1,32")
    parser.add_argument("--eager", action="store_true")
    args = parser.parse_args()
    if args.eager:
        simulator._compiled_step = lambda: simulator.tile_step

    module = ClassifierModule.load_from_checkpoint(args.checkpoint, map_location="cuda")
    model = module.model.eval()
    settings, device = EvaluateConfig(), PRESETS["rram"]
    x = torch.randn(args.batch, args.seq_len, module.hparams.d_in, device="cuda")
    programs = simulator.map_model(model, [x[:256]], settings.tile_rows, settings.tile_cols, settings.range_margin,
                                   device)
    results = {"device": device_name(), "torch": torch.__version__, "args": vars(args), "runs": []}
    with torch.no_grad():
        for chips in map(int, args.chips.split(",")):
            chip_model = simulator.simulated(model, programs, device, chips, 1.0, 12, 12)
            inputs = x[:args.batch // chips].repeat(chips, 1, 1)
            first = timed(lambda: chip_model(inputs))
            seconds = timed(lambda: chip_model(inputs))
            results["runs"].append({"chips": chips, "sequences": len(inputs), "first_call_s": first,
                                    "seconds": seconds, "sequences_per_s": len(inputs) / seconds})
            print(json.dumps(results["runs"][-1]), flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
