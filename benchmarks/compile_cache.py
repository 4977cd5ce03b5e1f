"""What compiling the training pass costs a first and a later process on one machine (the compile caches).

    python benchmarks/compile_cache.py --preset presets/smnist.yaml --seq-len 784 [--bits all=7] --processes 3 \\
        [--custom-autograd-cache on|off] --out compile_cache.json

Each process builds the preset's model, compiles its training pass (`torch.compile` of model(x, "conv") in
training mode, as `pipeline.cuda_graphs.capture` does before capturing) and times the first forward + backward
through it, which holds Dynamo's trace, AOT autograd and inductor's code generation or its cache look-ups. The
processes run one after another on one fresh cache folder (`TORCHINDUCTOR_CACHE_DIR`), so the first compiles
cold and the later ones find what it stored. Per process: the seconds to the first step, inductor's FX graph
cache hits and misses and AOT autograd's cache hits, misses and bypasses (torch's compile counters), and the
largest difference of the compiled pass's output and gradients from eager ones (dropout off, so that both
passes draw nothing). `--custom-autograd-cache off`
leaves AOT autograd's cache off for graphs holding a `torch.autograd.Function` (torch's default); `on` is what
`capture` uses. Runs on a GPU when there is one, else on the CPU (inductor's C++ backend).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from bench_config import Report, add_model_arguments, preset_model

from pipeline.cuda_graphs import compile_settings

COUNTERS = {"inductor": ("fxgraph_cache_hit", "fxgraph_cache_miss"),
            "aot_autograd": ("autograd_cache_hit", "autograd_cache_miss", "autograd_cache_bypass")}


def one_process(args) -> dict:
    """The measurement inside one process (see the module docstring)."""
    from torch._dynamo.utils import counters

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    config, model = preset_model(args, dropout=0.0)  # no dropout: eager and compiled passes draw nothing
    model = model.to(device).train()
    x = torch.randn(config.train.batch_size, args.seq_len, 1, device=device)
    y = torch.randint(0, args.classes, (config.train.batch_size,), device=device)

    def gradients(forward) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        out = forward(x)
        F.cross_entropy(out, y).backward()
        return out.detach(), [p.grad.detach().clone() for p in model.parameters() if p.grad is not None]

    buffers = {name: b.clone() for name, b in model.named_buffers()}
    reference = gradients(lambda v: model(v, "conv"))
    model.load_state_dict(buffers, strict=False)
    compiled = torch.compile(lambda v: model(v, "conv"))
    start = time.perf_counter()
    with compile_settings(args.custom_autograd_cache == "on"):
        got = gradients(compiled)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    error = max((a - b).abs().max().item() for a, b in zip([got[0], *got[1]], [reference[0], *reference[1]]))
    return {"first_step_s": seconds,
            "max_abs_difference_from_eager": error,
            **{name: counters[group][name] for group, names in COUNTERS.items() for name in names}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--custom-autograd-cache", choices=["on", "off"], default="on")
    parser.add_argument("--out", type=Path, default=Path("compile_cache.json"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_process(args)))
        return
    report = Report(args.out, args={k: v for k, v in vars(args).items() if k not in ("out", "child")})
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
        for i in range(1, args.processes + 1):
            done = subprocess.run([sys.executable, *sys.argv, "--child"], env=env, capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(done.stderr[-3000:])
            report(f"process {i}", json.loads(done.stdout.strip().splitlines()[-1]))


if __name__ == "__main__":
    main()
