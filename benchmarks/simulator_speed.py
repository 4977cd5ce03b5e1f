"""Crossbar simulator speed: simulated sequences (samples × chips) per second for a checkpoint's model on the
RRAM preset with 12-bit converters, read noise on, inputs of random data; and the tile kernel's time per layer
for several block sizes (sequences per program).

    python benchmarks/simulator_speed.py --checkpoint qat.ckpt --seq-len 784 --batch 4096 --chips 1,32 --repeats 5 \\
        --blocks 2,4,8 --warps 1,2,4 --out simulator_speed.json
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from bench_config import Report

from pipeline.analog import calibration, simulator, tile_kernel
from pipeline.analog.devices import PRESETS
from pipeline.config import EvaluateConfig
from pipeline.training import ClassifierModule


def timed(run) -> float:
    """Seconds of one call of run(), the GPU's queue drained before and after."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    run()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


@torch.no_grad()
def sequences_per_s(model, programs, device, chips: int, t: float, dac_bits, adc_bits, x: torch.Tensor,
                    repeats: int = 5) -> dict:
    """Speed of `simulated(model, …)` on `chips` chips for inputs x (samples, L, d_in), repeated per chip: the
    median of `repeats` calls after the first (compilation included), which is timed apart; the slowest call is
    kept too, since a call that compiles again (a new specialisation) shows there; on GPUs, each layer's kernel
    slot widths per tile index (`tile_kernel.slot_widths`, over all chips)."""
    chip_model = simulator.simulated(model, programs, device, chips, t, dac_bits, adc_bits)
    inputs = x.repeat(chips, 1, 1)
    first = timed(lambda: chip_model(inputs))
    calls = sorted(timed(lambda: chip_model(inputs)) for _ in range(repeats))
    seconds = statistics.median(calls)
    widths = [tile_kernel.slot_widths(tile_kernel.pack(
        layer._slots("w"), layer._slots("cells"), layer.read_std, layer.row_scale, layer.col_scale, dac_bits,
        adc_bits)[0]) for layer in (block.ssm for block in chip_model.blocks)] if x.is_cuda else None
    return {"chips": chips, "sequences": len(inputs), "slot_widths": widths, "first_call_s": first, "seconds": seconds,
            "slowest_call_s": calls[-1], "sequences_per_s": len(inputs) / seconds,
            "slowest_sequences_per_s": len(inputs) / calls[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--seq-len", type=int, default=784)
    parser.add_argument("--batch", type=int, default=4096, help="sequences × chips per forward pass")
    parser.add_argument("--chips", default="1,32")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per chip count after the first")
    parser.add_argument("--blocks", default="", help="block sizes to time the first layer's kernel with")
    parser.add_argument("--warps", default="4", help="warps per program to time the first layer's kernel with")
    parser.add_argument("--out", type=Path, default=Path("simulator_speed.json"))
    args = parser.parse_args()

    module = ClassifierModule.load(args.checkpoint).cuda()
    model = module.model.eval()
    settings, device = EvaluateConfig(), PRESETS["rram"]
    x = torch.randn(args.batch, args.seq_len, module.hparams.d_in, device="cuda")
    programs = calibration.map_model(model, [x[:256]], settings.tile_rows, settings.tile_cols, settings.range_margin,
                                   device)
    report = Report(args.out, args=vars(args))
    for chips in map(int, args.chips.split(",")):
        report(f"chips/{chips}", sequences_per_s(model, programs, device, chips, 1.0, 12, 12, x[:args.batch // chips],
                                                    args.repeats))
    layer = simulator.simulated(model, programs, device, 1, 1.0, 12, 12).blocks[0].ssm
    u = torch.randn(1, args.batch, layer.w_input.shape[2], args.seq_len, device="cuda")  # (C, B, H, L)
    for block, warps in [(int(b), int(w)) for b in args.blocks.split(",") if b for w in args.warps.split(",")]:
        def run(block=block, warps=warps):
            tile_kernel.scan(u, layer._slots("w"), layer._slots("cells"), layer.read_std, layer.row_scale,
                             layer.col_scale, 12, 12, block=block, warps=warps)
        run()
        seconds = timed(run)
        report(f"layer/block{block}_warps{warps}", {"layer_seconds": seconds,
                                                      "sequences_per_s_per_layer": args.batch / seconds})


if __name__ == "__main__":
    main()
