"""What a compiled training pass still runs op by op: the aten operators called outside inductor's generated kernels
in one forward + backward of a preset's model (torch.compile, training mode, as `pipeline.cuda_graphs.capture`
compiles it), counted by torch's profiler. On a GPU each is at least one kernel launch of its own; fused work does
not appear. Runs on the CPU (inductor's C++ backend) or a GPU, so a change's effect on fusion can be checked on
either.

    python benchmarks/compiled_ops.py --preset presets/smnist.yaml --seq-len 784 [--bits all=7] --batch 8
"""
from __future__ import annotations

import argparse
import collections

import torch
import torch.nn.functional as F
from bench_config import add_model_arguments, device_name, preset_model
from torch.profiler import ProfilerActivity, profile

from pipeline.cuda_graphs import _Forward, compile_settings


def called_by_an_op(event) -> bool:
    """An aten call made inside another aten op: part of that op's launch, not one of the pass's own."""
    return event.cpu_parent is not None and event.cpu_parent.name.startswith("aten::")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rows", type=int, default=12)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    _, model = preset_model(args)
    forward = torch.compile(_Forward(model.to(device).train(), "conv"))
    x = torch.randn(args.batch, args.seq_len, 1, device=device)
    y = torch.randint(0, args.classes, (args.batch,), device=device)

    def step():
        F.cross_entropy(forward(x), y).backward()

    with compile_settings():
        step()  # compiles
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
    top = collections.Counter(e.name for e in prof.events() if e.name.startswith("aten::") and not called_by_an_op(e))
    print(f"{device_name()} bits={args.bits or 'float'} batch={args.batch}: {sum(top.values())} aten ops outside "
          "the generated kernels per forward + backward")
    for name, count in top.most_common(args.rows):
        print(f"  {count:4d}  {name}")


if __name__ == "__main__":
    main()
