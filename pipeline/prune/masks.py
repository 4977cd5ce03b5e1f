"""Pruning masks, attached to the model's taps after any quantizer (so a pruned entry is exactly zero).

    structured    one complex state mode n of channel h: its Āₙ, B̄ₙ and Cₙ (on a crossbar, a 2×2 block with its
                  input row and output column), one mask shared by the taps A_bar, B_bar and C
    unstructured  single real entries of C (Re or Im: one crossbar cell pair each)
    mixing        single weights of the pointwise mixing convolution
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pipeline.model import S4DClassifier


class Mask(nn.Module):
    """x ⊙ keep, with keep (a 0/1 buffer) shaped like x's real view, or broadcastable to it."""

    def __init__(self, kind: str, shape: tuple[int, ...]):
        super().__init__()
        self.kind = kind  # "mode", "entry" or "mix"
        self.register_buffer("keep", torch.ones(shape))

    def extra_repr(self) -> str:
        return f"{self.kind}, kept {int(self.keep.sum())}/{self.keep.numel()}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_complex():
            return torch.view_as_complex((torch.view_as_real(x) * self.keep).contiguous())
        return x * self.keep


@dataclass
class LayerMasks:
    mode: Mask   # keep of shape (H, N/2, 1): one entry per complex mode
    entry: Mask  # keep of shape (H, N/2, 2): Re and Im of C
    mix: Mask    # keep shaped like the mixing weight


def _find(taps: nn.Module, kind: str) -> Mask | None:
    return next((m for m in taps.modules() if isinstance(m, Mask) and m.kind == kind), None)


def attach_masks(model: S4DClassifier) -> list[LayerMasks]:
    """All-ones masks on every layer; returns the existing ones where masks are attached already."""
    layers = []
    for block in model.blocks:
        ssm = block.ssm
        if _find(ssm.taps, "mode") is None:
            modes = tuple(ssm.A_im.shape)
            mode = Mask("mode", (*modes, 1))
            for tap in ("A_bar", "B_bar", "C"):
                ssm.taps.attach(tap, mode)
            ssm.taps.attach("C", Mask("entry", (*modes, 2)))
            block.taps.attach("mix", Mask("mix", tuple(block.mix.weight.shape)))
        layers.append(LayerMasks(_find(ssm.taps, "mode"), _find(ssm.taps, "entry"), _find(block.taps, "mix")))
    return layers


def fractions(layers: list[LayerMasks]) -> dict:
    """Pruned fraction per granularity, overall and per layer."""
    def frac(masks: list[Mask]) -> float:
        total = sum(m.keep.numel() for m in masks)
        return 1 - sum(float(m.keep.sum()) for m in masks) / total

    out = {"pruned/structured_frac": frac([l.mode for l in layers]),
           "pruned/unstructured_frac": frac([l.entry for l in layers]),
           "pruned/mixing_frac": frac([l.mix for l in layers])}
    for i, l in enumerate(layers):
        out |= {f"pruned/layer{i}/{name}_frac": frac([mask])
                for name, mask in (("structured", l.mode), ("unstructured", l.entry), ("mixing", l.mix))}
    return out
