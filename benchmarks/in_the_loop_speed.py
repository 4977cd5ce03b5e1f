"""Training speed of hardware-in-the-loop QAT (target `chip`): forward, backward through time and an AdamW step of
a preset's model on its crossbar tiles, one drawn chip per pass, on random sequences of the preset's shape.

    python benchmarks/in_the_loop_speed.py --preset presets/smnist.yaml --length 784 --steps 5 --out speed.json

On GPUs the tiles run as Triton kernels forward and backward (tile_kernel), elsewhere as the eager step loop.

Needs neither MLflow nor DVC, nor the data set.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from bench_config import accelerator, device_name, load_preset

from pipeline.analog.in_the_loop import calibrate_tiles
from pipeline.model import S4DClassifier
from pipeline.steps.qat import in_the_loop, quantization


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="presets/smnist.yaml")
    parser.add_argument("--length", type=int, default=784, help="sequence length")
    parser.add_argument("--d-in", type=int, default=1)
    parser.add_argument("--device", default="rram", help="qat.chip_device")
    parser.add_argument("--batch-size", type=int, help="override train.batch_size")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps (after 2 warm-up steps)")
    parser.add_argument("--profile", type=Path, help="also write the profiler's table of one training step here")
    parser.add_argument("--out", type=Path, default=Path("in_the_loop_speed.json"))
    args = parser.parse_args()

    config = load_preset(args.preset, 1, overrides=["qat.target=chip", f"qat.chip_device={args.device}"])
    on, batch = accelerator(), args.batch_size or config.train.batch_size
    torch.manual_seed(0)
    model = S4DClassifier(args.d_in, 10, **config.model.model_dump())
    quantization(config.qat).attach(model)
    in_the_loop(config, config.qat).attach(model)
    model = model.to(on)
    x, y = torch.randn(batch, args.length, args.d_in, device=on), torch.randint(0, 10, (batch,), device=on)
    calibrate_tiles(model.eval(), [x])
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def train_step():
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x, "chip"), y).backward()
        optimizer.step()
        if on == "cuda":
            torch.cuda.synchronize()

    seconds = []
    for step in range(2 + args.steps):
        start = time.perf_counter()
        train_step()
        if step >= 2:
            seconds.append(time.perf_counter() - start)
    if args.profile:
        with torch.profiler.profile() as profiler:
            train_step()
        order = "self_device_time_total" if on == "cuda" else "self_cpu_time_total"
        args.profile.write_text(profiler.key_averages().table(sort_by=order, row_limit=20))
    median = sorted(seconds)[len(seconds) // 2]
    result = {"preset": args.preset, "model": config.model.model_dump(), "length": args.length, "batch_size": batch,
              "chip": in_the_loop(config, config.qat).stored(), "device": device_name(), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "step_seconds": seconds, "samples_per_s": batch / median}
    print(json.dumps({k: result[k] for k in ("preset", "length", "device", "samples_per_s")}), flush=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
