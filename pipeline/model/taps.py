"""Named points in the model where a tensor can be transformed (quantized, masked, perturbed) on its way to use.

An empty `Taps` is the identity, so the float model is the same class as the quantized, pruned or noisy one.
Transforms at one point run in one fixed order of their kinds, `ORDER`, whatever the order they were attached
in: quantizer (the value a cell is programmed to), noise (the device's error on it), mask (a removed cell stays
exactly zero).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

ORDER = ("quantizer", "noise", "mask")  # kinds (class names, lower case) in the order they apply


def kind(transform: nn.Module) -> str:
    return type(transform).__name__.lower()


def rank(transform: nn.Module) -> int:
    """Position of the transform's kind in `ORDER`; other kinds come after those."""
    return ORDER.index(kind(transform)) if kind(transform) in ORDER else len(ORDER)


class Taps(nn.ModuleDict):
    def forward(self, name: str, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self[name](x) if name in self else x

    def attach(self, name: str, transform: nn.Module) -> None:
        """Add `transform` to the chain at `name`, after the members of its own and earlier kinds (`rank`).

        Chain members are named by kind (quantizer, mask, mask_1, noise, ...), so adding one kind never renames
        another: a checkpoint's keys stay valid when noise is added in front of its masks."""
        chain = list(self[name]) if name in self else []
        at = next((i for i, m in enumerate(chain) if rank(m) > rank(transform)), len(chain))
        chain.insert(at, transform)
        names, counts = [], {}
        for module in chain:
            k = kind(module)
            names.append(k if k not in counts else f"{k}_{counts[k]}")
            counts[k] = counts.get(k, 0) + 1
        self[name] = nn.Sequential(OrderedDict(zip(names, chain)))
