"""The converters between the digital signals and a tile's rows and columns: symmetric b-bit DACs and ADCs."""
from __future__ import annotations

import torch


def converter_levels(bits: int) -> int:
    """L of a symmetric b-bit converter, codes {−L, …, L} with L = 2^(b−1) − 1: 2^b − 1 codes, all of them b-bit
    two's complement numbers (its one asymmetric code, −2^(b−1), unused); b ≥ 2."""
    return 2 ** (bits - 1) - 1


class _Convert(torch.autograd.Function):
    """The converter's grid forward; straight-through backward inside the full scale, zero where it clips (with
    `pairs`, zero for both entries of the last dimension where either clips)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, bits: int, full_scale: torch.Tensor | float, pairs: bool) -> torch.Tensor:
        levels = converter_levels(bits)
        step = full_scale / levels
        code = torch.round(x / step)
        if ctx.needs_input_grad[0]:
            inside = code.abs() <= levels
            ctx.save_for_backward(inside.all(-1, keepdim=True) if pairs else inside)
        return torch.clamp(code, -levels, levels) * step

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        inside, = ctx.saved_tensors
        return g * inside, None, None, None


def convert(x: torch.Tensor, bits: int | None, full_scale: torch.Tensor | float, pairs: bool = False
            ) -> torch.Tensor:
    """A DAC or ADC: the grid {−L, …, L}·full_scale/L with L = `converter_levels(bits)`, clipped; None = ideal.
    Gradients pass straight through where the input is inside the full scale (hardware-in-the-loop training).
    `pairs`: the last dimension holds a mode's (Re, Im), whose gradient passes only where both are inside: a
    converter that cut one part would turn the mode's rotation into a shear, and alternating shears over hundreds
    of steps make the gradient grow without bound, while an intact rotation with |Ā| ≤ 1 cannot."""
    if bits is None:
        return x
    return _Convert.apply(x, bits, full_scale, pairs)
