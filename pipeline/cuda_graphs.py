"""The training forward and backward pass captured as CUDA graphs (`torch.cuda.make_graphed_callables`).

A training step of the S4D classifier launches hundreds of small kernels (FFTs, the Vandermonde product, one
reduction and a few elementwise kernels per quantizer); eagerly, the GPU waits on the launches. Replaying the
captured graphs launches each pass at once. The capture is made for one input shape and the model's state as it is
then (quantizers, masks, noise level, training mode): build it once the training configuration is set.
Compiled first (`torch.compile`), the pass also fuses the elementwise work around the FFTs (BatchNorm, dropout,
GLU, quantizers) into fewer kernels. What the compile produces is kept on disk for the next process on the same
machine (inductor's code and AOT autograd's forward and backward graphs, under `TORCHINDUCTOR_CACHE_DIR`, by
default a folder per user in the temporary folder); AOT autograd keeps graphs that hold a `torch.autograd.Function`
(the FFT convolution, the fake quantizer) only when told to (`compile_settings`).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch._functorch import config as functorch_config


class _Forward(nn.Module):
    """model(x, mode) as a one-argument module, the form that capture takes."""

    def __init__(self, model: nn.Module, mode: str):
        super().__init__()
        self.model, self.mode = model, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, self.mode)


def compile_settings(cache_autograd_functions: bool = True):
    """torch's compile settings for the training pass: with `cache_autograd_functions`, AOT autograd's on-disk cache
    also keeps graphs that call a `torch.autograd.Function` (torch leaves them out by default). Its key holds the
    traced forward and backward of each such function, so a changed function is compiled again."""
    return functorch_config.patch(autograd_cache_allow_custom_autograd_functions=cache_autograd_functions)


def capture(model: nn.Module, mode: str, sample: torch.Tensor,
            compile: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
    """model(·, mode) in training mode, as graphs for inputs shaped like `sample` (compiled first with `compile`);
    gradients reach the model's parameters as in eager mode. Capture runs three warm-up passes on `sample`; the
    buffers they update (BatchNorm statistics, observed quantizer clips) are restored, except a learned clip's
    one-time initialisation, which the first training step would have made from the same batch."""
    buffers = [b for name, b in model.named_buffers() if not name.endswith("initialized")]
    saved = [b.clone() for b in buffers]
    forward = _Forward(model, mode).train()
    if compile:
        forward = torch.compile(forward)
    with compile_settings():
        graphed = torch.cuda.make_graphed_callables(forward, (sample,), allow_unused_input=True)
    with torch.no_grad():
        for buffer, value in zip(buffers, saved):
            buffer.copy_(value)
    return graphed
