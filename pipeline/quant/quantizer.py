"""Uniform, symmetric, per-tensor fake quantization with a straight-through estimator (STE).

b bits use the integer grid {−L, …, L} with L = 2^(b−1): 2^b + 1 levels, so 1 bit is ternary {−s, 0, s}.
    q(x) = s · clamp(round(x / s), −L, L),    s = clip / L
The clip is the tensor's abs-max (default), a fixed value, or learned (LSQ: Esser et al., "Learned step
size quantization", ICLR 2020, with its gradient scale 1/√(numel·L)). Backward: ∂q/∂x = 1 inside the grid
(|x| ≤ L·s) and 0 outside; a learned clip gets LSQ's gradient ∂q/∂s = round(x/s) − x/s inside, ±L
outside. Complex tensors are quantized as their (re, im) pairs with one scale. The forward pass is elementwise (with
torch.compile, fused into the kernels around it); with an abs-max clip nothing lies outside, so the backward is free.

`unit_disc=True` keeps complex values with |z| ≤ 1 inside the closed unit disc (a stable Ā stays stable): where
rounding both parts leaves the disc, the nearest of the grid points that round one part toward zero (or both)
and lie inside is taken; rounding both toward zero never leaves it, since then |q_re| ≤ |z_re| and
|q_im| ≤ |z_im|. Still on the square grid, so a crossbar stores it as it stores any value; gradient: the STE.

Signals (activations, the state) are quantized with `observe=True`: their abs-max clip is the current tensor's
while training and an exponential moving average of it (momentum 0.1) at evaluation, so that an evaluated
sample's result does not depend on the rest of its batch, as with a converter of fixed range. `calibrating`
lets the average be measured without training (PTQ).
"""
from __future__ import annotations

import torch
from torch import nn

SCALES = ("absmax", "fixed", "learned")


class _FakeQuantize(torch.autograd.Function):
    """q = s·clamp(round(x/s), −L, L) for a step s (a 0-dim tensor) with the STE and LSQ gradients above.
    With `bounded` (an abs-max clip: |x| ≤ L·s by construction) the STE is the identity and nothing is saved."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, step: torch.Tensor, levels: int, bounded: bool) -> torch.Tensor:
        step = step.to(x.dtype)
        # torch.fake_quantize_per_tensor_affine's arithmetic (x·(1/s), rounded half to even; + 0 makes −0 +0), as
        # elementwise ops that torch.compile fuses with the abs-max reduction and the neighbouring kernels
        q = (torch.round(x * torch.reciprocal(step)).clamp(-levels, levels) + 0.0) * step
        ctx.levels, ctx.bounded = levels, bounded
        if not bounded:
            ctx.save_for_backward(x, q, step)
        return q

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        if ctx.bounded:
            return g, None, None, None
        x, q, step = ctx.saved_tensors
        inside = x.abs() <= ctx.levels * step
        grad_step = None
        if ctx.needs_input_grad[1]:  # Σ g·(q − x·[inside])/s: round(x/s) − x/s inside, ±L outside
            grad_step = (g * (q - x * inside)).sum().div(step).to(step.dtype)
        return g * inside, grad_step, None, None


def scale_grad(v: torch.Tensor, factor: float) -> torch.Tensor:
    """v forward, factor·∂ backward."""
    return v * factor + (v - v * factor).detach()


class Quantizer(nn.Module):
    def __init__(self, bits: int, scale: str = "absmax", clip: float | None = None, observe: bool = False,
                 momentum: float = 0.1, unit_disc: bool = False):
        super().__init__()
        if not (isinstance(bits, int) and 1 <= bits <= 16):
            raise ValueError(f"bits = {bits!r}: allowed integers 1..16")
        if scale not in SCALES:
            raise ValueError(f"scale = {scale!r}: allowed {SCALES}")
        if scale == "fixed" and not (clip and clip > 0):
            raise ValueError(f"clip = {clip!r}: a fixed clip must be > 0")
        self.bits, self.scale, self.levels, self.unit_disc = bits, scale, 2 ** (bits - 1), unit_disc
        self.observe, self.momentum, self.calibrating = observe and scale == "absmax", momentum, False
        if self.observe:
            self.register_buffer("running_clip", torch.tensor(0.0))
            self.register_buffer("observed", torch.tensor(False))
        if scale == "fixed":
            self.register_buffer("clip", torch.tensor(float(clip)))
        elif scale == "learned":  # initialised from the first tensor it sees
            self.clip = nn.Parameter(torch.tensor(1.0))
            self.register_buffer("initialized", torch.tensor(False))
            self._checked = False  # host-side cache of `initialized`, so steady state needs no device sync

    def extra_repr(self) -> str:
        return (f"bits={self.bits}, scale={self.scale}" + (", observed" if self.observe else "")
                + (", unit_disc" if self.unit_disc else ""))

    def _clip(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale == "absmax":
            current = torch.linalg.vector_norm(x.detach(), float("inf"))
            if not self.observe:
                return current
            if self.training or self.calibrating:
                with torch.no_grad():
                    average = (1 - self.momentum) * self.running_clip + self.momentum * current
                    self.running_clip.copy_(torch.where(self.observed, average, current))
                    self.observed.fill_(True)
                return current
            return torch.where(self.observed, self.running_clip, current)
        if self.scale == "fixed":
            return self.clip
        if not self._checked:
            if not self.initialized:
                with torch.no_grad():
                    self.clip.fill_(x.detach().abs().max().item())
                    self.initialized.fill_(True)
            self._checked = True
        return scale_grad(self.clip.abs(), 1.0 / (x.numel() * self.levels) ** 0.5)

    def _quantize(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(q(x), its step s)."""
        step = torch.clamp(self._clip(x) / self.levels, min=torch.finfo(x.dtype).tiny)  # 1/s stays finite
        return _FakeQuantize.apply(x, step, self.levels, self.scale == "absmax"), step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_complex():
            return self._quantize(x)[0]
        pairs = torch.view_as_real(x)
        q, step = self._quantize(pairs)
        if self.unit_disc:
            q = q + (inside_unit_disc(pairs.detach(), q.detach(), step.detach()) - q).detach()
        return torch.view_as_complex(q.contiguous())


def inside_unit_disc(z: torch.Tensor, q: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """`q` (grid points of step `step` nearest to the (re, im) pairs `z`, last axis) where |q| ≤ 1; elsewhere the
    nearest inside the disc of (q_re, t_im), (t_re, q_im), (t_re, t_im), with t = z rounded toward zero."""
    toward_zero = torch.trunc(z / step) * step
    candidates = torch.stack([q, torch.stack([q[..., 0], toward_zero[..., 1]], -1),
                              torch.stack([toward_zero[..., 0], q[..., 1]], -1), toward_zero])  # (4, ..., 2)
    outside = candidates.square().sum(-1) > 1
    distance = (candidates - z).square().sum(-1).masked_fill(outside, float("inf"))
    best = candidates.gather(0, distance.argmin(0, keepdim=True).unsqueeze(-1).expand(1, *z.shape)).squeeze(0)
    return torch.where(outside[0].unsqueeze(-1), best, q)
