"""Named points in the model where a tensor can be transformed (quantized, masked, perturbed) on its way to use.

An empty `Taps` is the identity, so the float model is the same class as the quantized, pruned or noisy one.
Transforms attached to one point run in the order they were attached.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


class Taps(nn.ModuleDict):
    def forward(self, name: str, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self[name](x) if name in self else x

    def attach(self, name: str, transform: nn.Module, before: type | None = None) -> None:
        """Append `transform` to the chain at `name`, or insert it before the first module of type `before`.

        Chain members are named by type (quantizer, mask, mask_1, noise, ...), so inserting one kind never
        renames another: a checkpoint's keys stay valid when noise is added in front of its masks."""
        chain = list(self[name]) if name in self else []
        at = next((i for i, m in enumerate(chain) if before is not None and isinstance(m, before)), len(chain))
        chain.insert(at, transform)
        names, counts = [], {}
        for module in chain:
            kind = type(module).__name__.lower()
            names.append(kind if kind not in counts else f"{kind}_{counts[kind]}")
            counts[kind] = counts.get(kind, 0) + 1
        self[name] = nn.Sequential(OrderedDict(zip(names, chain)))
