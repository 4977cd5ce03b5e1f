"""S4D sequence classifier (DESIGN.md §2): encoder → L × [BatchNorm → S4D → dropout → pointwise mixing]
→ mean over time → decoder."""
from __future__ import annotations

import torch
from torch import nn

from pipeline.model.s4d import S4D


class Block(nn.Module):
    """One layer: z = mix(dropout(S4D(norm(x)))) with prenorm, or norm(mix(...)) with postnorm; + x if residual.

    Mixing is a pointwise Conv1d(H→2H) + GLU, or Conv1d(H→H) + ReLU for the small hardware model.
    """

    def __init__(self, d_model: int, d_state: int, dropout: float, mixing: str, residual: bool,
                 prenorm: bool, a_init: str, dt_min: float, dt_max: float):
        super().__init__()
        self.norm = nn.BatchNorm1d(d_model)
        self.ssm = S4D(d_model, d_state, a_init=a_init, dt_min=dt_min, dt_max=dt_max)
        self.dropout = nn.Dropout(dropout)
        if mixing == "glu":
            self.mix, self.activation = nn.Conv1d(d_model, 2 * d_model, 1), nn.GLU(dim=1)
        elif mixing == "relu":
            self.mix, self.activation = nn.Conv1d(d_model, d_model, 1), nn.ReLU()
        else:
            raise ValueError(f"mixing = {mixing!r}: allowed 'glu' or 'relu'")
        self.residual, self.prenorm = residual, prenorm

    def forward(self, x: torch.Tensor, mode: str = "conv") -> torch.Tensor:
        z = self.norm(x) if self.prenorm else x
        z = self.activation(self.mix(self.dropout(self.ssm(z, mode))))
        if self.residual:
            z = z + x
        return z if self.prenorm else self.norm(z)


class S4DClassifier(nn.Module):
    """Maps (batch, L, d_in) sequences to (batch, classes) logits."""

    def __init__(self, d_in: int, n_classes: int, d_model: int = 64, d_state: int = 64, n_layers: int = 2,
                 dropout: float = 0.0, mixing: str = "glu", residual: bool = False, prenorm: bool = True,
                 a_init: str = "lin", dt_min: float = 1e-3, dt_max: float = 1e-1):
        super().__init__()
        self.encoder = nn.Linear(d_in, d_model)
        self.blocks = nn.ModuleList(
            Block(d_model, d_state, dropout, mixing, residual, prenorm, a_init, dt_min, dt_max)
            for _ in range(n_layers)
        )
        self.decoder = nn.Linear(d_model, n_classes)

    def forward(self, x: torch.Tensor, mode: str = "conv") -> torch.Tensor:
        z = self.encoder(x).transpose(1, 2)  # (B, H, L)
        for block in self.blocks:
            z = block(z, mode)
        return self.decoder(z.mean(dim=-1))

    def ssm_parameters(self) -> list[nn.Parameter]:
        return [p for block in self.blocks for p in block.ssm.ssm_parameters()]
