"""Named points in the model where a tensor can be transformed (quantized, masked, perturbed) on its way to use.

An empty `Taps` is the identity, so the float model is the same class as the quantized, pruned or noisy one.
Transforms attached to one point run in the order they were attached.
"""
from __future__ import annotations

import torch
from torch import nn


class Taps(nn.ModuleDict):
    def forward(self, name: str, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self[name](x) if name in self else x

    def attach(self, name: str, transform: nn.Module) -> None:
        if name in self:
            chain = self[name] if isinstance(self[name], nn.Sequential) else nn.Sequential(self[name])
            chain.append(transform)
            self[name] = chain
        else:
            self[name] = transform
