"""Where a training step's GPU time goes: the kernels of forward + backward + optimizer step of a preset's model on
random data: eager speed, then the kernels of the replayed step (`GraphedStep`, as training captures it, and the
fused AdamW step) by total GPU time and their speed.

    python benchmarks/step_profile.py --preset presets/smnist.yaml --seq-len 784 --bits all=7 --rows 25 [--compile]
        [--conv fft]
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from bench_config import add_model_arguments, device_name, preset_model
from torch.profiler import ProfilerActivity, profile

import pipeline.model.fft_conv as fft_conv
import pipeline.model.toeplitz_conv as toeplitz_conv
from pipeline.cuda_graphs import GraphedStep


def steps_per_second(step, count: int) -> float:
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(count):
        step()
    torch.cuda.synchronize()
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--rows", type=int, default=25)
    parser.add_argument("--compile", action="store_true", help="torch.compile the captured pass")
    parser.add_argument("--fft", choices=["pow2", "exact"], default="pow2", help="FFT length: power of 2 or 2L")
    parser.add_argument("--pairs", choices=["on", "off"], default="on",
                        help="an even batch's FFTs as complex pairs (off: real FFTs, each inverse's input copied)")
    parser.add_argument("--conv", choices=["auto", "fft"], default="auto",
                        help="the S4D convolution: auto (Toeplitz products where TF32 is allowed) or always the FFT")
    args = parser.parse_args()
    if args.conv == "fft":
        toeplitz_conv.MAX_LENGTH = 0
    if args.pairs == "off":
        fft_conv.PAIRED_DEVICES = ()
    if args.fft == "exact":
        fft_conv.fft_length = lambda length: 2 * length

    config, model = preset_model(args)
    batch = config.train.batch_size
    model = model.cuda().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    x = torch.randn(batch, args.seq_len, 1, device="cuda")
    y = torch.randint(0, args.classes, (batch,), device="cuda")

    def eager_step():
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    start = time.perf_counter()
    eager_step()
    torch.cuda.synchronize()
    first = time.perf_counter() - start
    eager = steps_per_second(eager_step, 20)
    optimizer.zero_grad(set_to_none=True)
    start = time.perf_counter()
    replay = GraphedStep(model, "conv", x, y, compile=args.compile)
    capture_seconds = time.perf_counter() - start

    def graphed_step():
        replay(x, y)
        optimizer.step()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            graphed_step()
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=args.rows))
    graphed = steps_per_second(graphed_step, 50)
    print(f"{device_name()} bits={args.bits or 'float'} compile={args.compile} conv={args.conv} fft={args.fft} "
          f"pairs={args.pairs} "
          f"batch={batch}: "
          f"first step {first:.1f} s, eager {eager * batch:.0f} samples/s, capture {capture_seconds:.1f} s, "
          f"graphed {graphed * batch:.0f} samples/s "
          "(model step only, no data loading or Lightning)")


if __name__ == "__main__":
    main()
