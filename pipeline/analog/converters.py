"""The converters between the digital signals and a tile's rows and columns: symmetric b-bit DACs and ADCs."""
from __future__ import annotations

from typing import NamedTuple

import torch


def converter_levels(bits: int) -> int:
    """L of a symmetric b-bit converter, codes {−L, …, L} with L = 2^(b−1) − 1: 2^b − 1 codes, all of them b-bit
    two's complement numbers (its one asymmetric code, −2^(b−1), unused); b ≥ 2."""
    return 2 ** (bits - 1) - 1


class Converter(NamedTuple):
    """A converter over ±full scale s: code = clamp(round(x·gain), ±L), output code·step, with gain L/s; a DAC reads
    in DAC units (step 1/L: ±1 at full scale), an ADC in signal units (step s/L). Ideal (L = 0): x·gain·step.
    `slope` is ∂output/∂x where the converter does not clip (straight-through: 1/s for a DAC, 1 for an ADC).
    The gains multiply instead of dividing, as the GPU kernel's do (tile_kernel.pack)."""

    gain: torch.Tensor | float
    step: torch.Tensor | float
    levels: int
    slope: torch.Tensor | float

    def __call__(self, x: torch.Tensor, pairs: bool = False, keep: bool = False
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(the output, where it did not clip if `keep` else None); `pairs`: the last dimension holds a mode's
        (Re, Im), and where it did not clip is one mask per pair (…), inside only where both are."""
        if not self.levels:  # ideal: step 1
            return (x if isinstance(self.gain, float) and self.gain == 1.0 else x * self.gain), None
        code = (x * self.gain).round_()
        inside = None
        if keep:
            inside = code.abs() <= self.levels
            inside = inside[..., 0] & inside[..., 1] if pairs else inside
        return code.clamp_(-self.levels, self.levels).mul_(self.step), inside


def dac(full_scale: torch.Tensor, bits: int | None) -> Converter:
    """A DAC over ±full_scale at `bits` (None: ideal, x / full_scale)."""
    if bits is None:
        return Converter(1 / full_scale, 1.0, 0, 1 / full_scale)
    levels = converter_levels(bits)
    return Converter(levels / full_scale, 1 / levels, levels, 1 / full_scale)


def adc(full_scale: torch.Tensor, bits: int | None) -> Converter:
    """An ADC over ±full_scale at `bits` (None: ideal, the current itself)."""
    if bits is None:
        return Converter(1.0, 1.0, 0, 1.0)
    levels = converter_levels(bits)
    return Converter(levels / full_scale, full_scale / levels, levels, 1.0)
