"""Pruning masks, attached to the model's taps after any quantizer (so a pruned entry is exactly zero).

    structured    one complex state mode n of channel h: its Āₙ, B̄ₙ and Cₙ (on a crossbar, a 2×2 block with its
                  input row and output column), one mask shared by the taps A_bar, B_bar and C
    unstructured  single real entries of every S4D tensor as a crossbar stores it: Re or Im of Āₙ (each two cell
                  pairs of the 2×2 block), of B̄ₙ and of Cₙ (one cell pair each), and D_h; one mask per tensor
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


ENTRY_TAPS = ("A_bar", "B_bar", "C", "D")  # the S4D tensors whose single entries are pruned, as discrete() orders them


@dataclass
class LayerMasks:
    mode: Mask                # keep of shape (H, N/2, 1): one entry per complex mode
    entries: dict[str, Mask]  # tap → keep of shape (H, N/2, 2) (Re and Im; complex tensors) or (H,) (D)
    mix: Mask                 # keep shaped like the mixing weight

    def live(self, tap: str) -> torch.Tensor:
        """1 where an entry of `tap` is neither pruned alone nor in a pruned mode."""
        keep = self.entries[tap].keep
        return keep if tap == "D" else keep * self.mode.keep


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
            for tap in ENTRY_TAPS:
                ssm.taps.attach(tap, Mask("entry", tuple(ssm.D.shape) if tap == "D" else (*modes, 2)))
            block.taps.attach("mix", Mask("mix", tuple(block.mix.weight.shape)))
        entries = {tap: _find(ssm.taps[tap], "entry") for tap in ENTRY_TAPS}
        layers.append(LayerMasks(_find(ssm.taps, "mode"), entries, _find(block.taps, "mix")))
    return layers


def fractions(layers: list[LayerMasks]) -> dict:
    """Pruned fraction per granularity (unstructured: of the S4D tensors' entries, pruned alone), overall, per
    layer (the parts of QS4D's pruning figure) and per tensor."""
    def frac(masks: list[Mask]) -> float:
        total = sum(m.keep.numel() for m in masks)
        return 1 - sum(float(m.keep.sum()) for m in masks) / total

    def parts(chosen: list[LayerMasks]) -> dict[str, float]:
        return {"structured": frac([l.mode for l in chosen]),
                "unstructured": frac([m for l in chosen for m in l.entries.values()]),
                "mixing": frac([l.mix for l in chosen])}

    out = {f"pruned/{part}_frac": value for part, value in parts(layers).items()}
    out |= {f"pruned/unstructured/{tap}_frac": frac([l.entries[tap] for l in layers]) for tap in ENTRY_TAPS}
    for i, l in enumerate(layers):
        out |= {f"pruned/layer{i}/{part}_frac": value for part, value in parts([l]).items()}
    return out
