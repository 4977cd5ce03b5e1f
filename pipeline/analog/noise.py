"""Analog weight noise: additive Gaussian with std = σ_rel·(max − min) of the tensor, redrawn each forward pass.

Two protocols say which tensors it perturbs, each after its quantizer and before any pruning mask (programmed
cells, zeros included, are perturbed; removed cells stay removed):
    crossbar   every crossbar-mapped tensor of each layer: Ā, B̄, C, D (a complex tensor's range over Re and Im)
    paper      QS4D's: the continuous A only, Re and Im separately, each with the range of its own part
Either optionally adds the mixing weights.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from pipeline.model import S4DClassifier

PROTOCOL_TAPS = {"crossbar": ("A_bar", "B_bar", "C", "D"), "paper": ("A_re", "A_im")}


class Noise(nn.Module):
    def __init__(self, sigma: float = 0.0):
        super().__init__()
        if sigma < 0:
            raise ValueError(f"sigma = {sigma}: must be ≥ 0")
        self.sigma = sigma

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.sigma == 0:
            return x
        if x.is_complex():
            return torch.view_as_complex(self(torch.view_as_real(x)).contiguous())
        spread = (x.max() - x.min()).detach()
        return x + torch.randn_like(x) * (self.sigma * spread)


@dataclass(frozen=True)
class WeightNoise:
    """Noise taps on the tensors of `protocol` (and the mixing weights with `mixing`), drawing at σ_rel = `sigma`
    while training."""

    sigma: float
    mixing: bool = False
    protocol: str = "crossbar"

    def __post_init__(self):
        if self.protocol not in PROTOCOL_TAPS:
            raise ValueError(f"protocol = {self.protocol!r}: allowed {sorted(PROTOCOL_TAPS)}")

    @classmethod
    def of(cls, value: WeightNoise | dict | None) -> WeightNoise | None:
        """`value` as a WeightNoise; a dict is its stored form (checkpoint hyperparameters)."""
        return cls(**value) if isinstance(value, dict) else value

    def stored(self) -> dict:
        return asdict(self)

    def attach(self, model: S4DClassifier) -> list[Noise]:
        """The taps, silent (σ 0) until `set_noise` turns them on."""
        return attach_noise(model, 0.0, self.mixing, self.protocol)


def attach_noise(model: S4DClassifier, sigma: float = 0.0, mixing: bool = False,
                 protocol: str = "crossbar") -> list[Noise]:
    """Noise on the tensors of `protocol` in every layer (and the mixing weights if asked); returns them."""
    added = []
    for block in model.blocks:
        points = [(block.ssm.taps, name) for name in PROTOCOL_TAPS[protocol]]
        points += [(block.taps, "mix")] if mixing else []
        for taps, name in points:
            noise = Noise(sigma)
            taps.attach(name, noise)  # between the quantizer and any mask (taps.ORDER)
            added.append(noise)
    return added


def noise_modules(model: nn.Module) -> list[Noise]:
    return [m for m in model.modules() if isinstance(m, Noise)]


def set_noise(model: nn.Module, sigma: float) -> None:
    for noise in noise_modules(model):
        noise.sigma = sigma
