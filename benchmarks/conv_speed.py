"""The S4D layer's convolution alone, per call of one layer, forward and forward + backward, with each form's
relative error (norm) of y, ∂/∂u and ∂/∂k against a float64 FFT convolution: on a GPU the FFT convolution against
the Toeplitz products on tensor cores (at each of `--precisions`), on a CPU against the dense Toeplitz product. A
decaying random kernel stands in for the layer's.

    python benchmarks/conv_speed.py --shapes 64x128x784,64x128x1024 [--precisions tf32,ieee] [--repeats 30]
    python benchmarks/conv_speed.py --shapes 64x64x40,256x64x40,64x64x64,64x64x128      # a CPU

On a GPU the times are CUDA-event times of back-to-back calls; on a CPU the best of 5 wall-clock means.
"""
from __future__ import annotations

import argparse
import time

import torch
from bench_config import device_name

from pipeline.model.dense_conv import dense_conv
from pipeline.model.fft_conv import fft_conv


def shapes(text: str) -> list[tuple[int, int, int]]:
    """'64x128x784,8x4x100' → [(64, 128, 784), (8, 4, 100)]: batch × channels × length."""
    try:
        parsed = [tuple(int(n) for n in part.split("x")) for part in text.split(",")]
    except ValueError:
        parsed = []
    if not parsed or any(len(shape) != 3 or min(shape) < 1 for shape in parsed):
        raise argparse.ArgumentTypeError(f"--shapes {text!r}: expected BxHxL[,BxHxL…] of positive integers")
    return parsed


def microseconds(call, repeats: int) -> float:
    for _ in range(2):
        call()
    if not torch.cuda.is_available():
        means = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(repeats):
                call()
            means.append((time.perf_counter() - start) / repeats * 1e6)
        return min(means)
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    for _ in range(repeats):
        call()
    end.record()
    torch.cuda.synchronize()
    return begin.elapsed_time(end) / repeats * 1e3


def outputs(conv, u, k, g) -> tuple[torch.Tensor, ...]:
    u, k = u.detach().requires_grad_(), k.detach().requires_grad_()
    y = conv(u, k)
    return (y, *torch.autograd.grad(y, (u, k), g))


def measure(conv, u, k, g, reference, repeats: int) -> str:
    errors = [((got.double() - want).norm() / want.norm()).item()
              for got, want in zip(outputs(conv, u, k, g), reference)]
    forward = microseconds(lambda: conv(u, k), repeats)
    both = microseconds(lambda: outputs(conv, u, k, g), repeats)
    return (f"forward {forward:.0f} µs, forward + backward {both:.0f} µs; "
            f"relative error y {errors[0]:.1e}, ∂u {errors[1]:.1e}, ∂k {errors[2]:.1e}")


def gpu_forms(precisions: str) -> dict:
    from pipeline.model.toeplitz_conv import toeplitz_conv  # Triton

    return {f"toeplitz/{p}": (lambda a, b, p=p: toeplitz_conv(a, b, p)) for p in precisions.split(",")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", type=shapes, default=shapes("64x128x784"))
    parser.add_argument("--precisions", default="tf32,ieee", help="Triton's tensor-core precisions to time")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(device_name())
    torch.manual_seed(0)
    for batch, channels, length in args.shapes:
        u, g = torch.randn(batch, channels, length, device=device), torch.randn(batch, channels, length, device=device)
        k = torch.randn(channels, length, device=device) * torch.exp(-torch.arange(length, device=device) / 200)
        reference = outputs(fft_conv, u.double(), k.double(), g.double())
        convolutions = {"fft": fft_conv} | (gpu_forms(args.precisions) if device == "cuda" else {"dense": dense_conv})
        for name, conv in convolutions.items():
            print(f"B {batch} H {channels} L {length} {name}: {measure(conv, u, k, g, reference, args.repeats)}")


if __name__ == "__main__":
    main()
