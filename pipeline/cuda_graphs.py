"""The training step captured as a CUDA graph: forward, loss, backward and gradient clipping (`GraphedStep`), or
the forward and backward pass alone (`capture`, `torch.cuda.make_graphed_callables`), the form DDP's gradient hooks
need.

A training step of the S4D classifier launches hundreds of small kernels (FFTs, the Vandermonde product, one
reduction and a few elementwise kernels per quantizer); eagerly, the GPU waits on the launches. Replaying a
captured graph launches them at once, and a graph of the whole step also spares the host autograd's per-parameter
work. The capture is made for one input shape and the model's state as it is then (quantizers, masks, noise level,
training mode): build it once the training configuration is set.
Compiled first (`torch.compile`), the pass also fuses the elementwise work around the FFTs (BatchNorm, dropout,
GLU, quantizers) into fewer kernels. What the compile produces is kept on disk for the next process on the same
machine (inductor's code and AOT autograd's forward and backward graphs, under `TORCHINDUCTOR_CACHE_DIR`, by
default a folder per user in the temporary folder); AOT autograd keeps graphs that hold a `torch.autograd.Function`
(the FFT convolution, the fake quantizer) only when told to (`compile_settings`).
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
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


class _Losses(_Forward):
    """(logits, per-sample cross-entropy) of model(x, mode) for labels y."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = super().forward(x)
        return logits, F.cross_entropy(logits, y, reduction="none")


@contextlib.contextmanager
def buffers_kept(model: nn.Module) -> Iterator[None]:
    """The model's buffers as they were before the block (capture's warm-up passes update BatchNorm statistics and
    observed quantizer clips), except a learned clip's one-time initialisation, which the first training step would
    have made from the same batch."""
    buffers = [b for name, b in model.named_buffers() if not name.endswith("initialized")]
    saved = [b.clone() for b in buffers]
    yield
    with torch.no_grad():
        for buffer, value in zip(buffers, saved):
            buffer.copy_(value)


def capture(model: nn.Module, mode: str, sample: torch.Tensor,
            compile: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
    """model(·, mode) in training mode, as graphs for inputs shaped like `sample` (compiled first with `compile`);
    gradients reach the model's parameters as in eager mode. Capture runs three warm-up passes on `sample`, with the
    buffers kept (`buffers_kept`)."""
    forward = _Forward(model, mode).train()
    if compile:
        forward = torch.compile(forward)
    with buffers_kept(model), compile_settings():
        return torch.cuda.make_graphed_callables(forward, (sample,), allow_unused_input=True)


class GraphedStep:
    """A captured training step; step(x, y) → (logits, per-sample losses), replayed for inputs shaped like the
    sample. Each replay computes, for x and y copied into the graph's inputs,
        logits = model(x, mode),  losses = cross-entropy(logits, y),  g = ∇ mean(losses)
    with g scaled by min(1, max_norm/‖g‖₂) if `max_norm`, and leaves g in the parameters' `.grad` (the graph's own
    tensors, which the next replay overwrites: read or step on them before it). The outputs are the graph's too."""

    def __init__(self, model: nn.Module, mode: str, x: torch.Tensor, y: torch.Tensor,
                 max_norm: float | None = None, compile: bool = False, warmup: int = 3):
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        self.max_norm = max_norm
        self.losses = _Losses(model, mode).train()
        if compile:
            self.losses = torch.compile(self.losses)
        self.x, self.y = x.clone(), y.clone()
        self.graph = torch.cuda.CUDAGraph()
        with buffers_kept(model), compile_settings():
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(warmup):
                    self._clear_gradients()
                    self._body()
            torch.cuda.current_stream().wait_stream(side)
            self._clear_gradients()
            with torch.cuda.graph(self.graph):
                self.outputs = self._body()
        self.gradients = [p.grad for p in self.parameters]
        self._clear_gradients()

    def _clear_gradients(self) -> None:
        for p in self.parameters:
            p.grad = None

    def _body(self) -> tuple[torch.Tensor, torch.Tensor]:
        logits, losses = self.losses(self.x, self.y)
        losses.mean().backward()
        if self.max_norm is not None:
            torch.nn.utils.clip_grad_norm_([p for p in self.parameters if p.grad is not None], self.max_norm,
                                           foreach=True)
        return logits.detach(), losses.detach()

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.x.copy_(x)
        self.y.copy_(y)
        self.graph.replay()
        for p, gradient in zip(self.parameters, self.gradients):
            p.grad = gradient
        return self.outputs
