"""S4D sequence classifier (DESIGN.md §2): encoder → L × [BatchNorm → S4D → dropout → pointwise mixing]
→ mean over time → decoder."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from pipeline.model.s4d import S4D
from pipeline.model.taps import Taps


class Block(nn.Module):
    """One layer: z = mix(dropout(S4D(norm(x)))) with prenorm, or norm(mix(...)) with postnorm; + x if residual.

    Mixing is a pointwise Conv1d(H→2H) + GLU, or Conv1d(H→H) + ReLU for the small hardware model.
    Taps: `act_in` (S4D input), `act_out` (S4D output, the mixing input), `mix` (mixing weight), `act_mix` (the
    mixing output, after its nonlinearity).
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
        self.taps = Taps()

    def forward(self, x: torch.Tensor, mode: str = "conv") -> torch.Tensor:
        z = self.norm(x) if self.prenorm else x
        z = self.taps("act_out", self.dropout(self.ssm(self.taps("act_in", z), mode)))
        z = self.taps("act_mix", self.mixing(z))
        if self.residual:
            z = z + x
        return z if self.prenorm else self.norm(z)

    def mixing(self, z: torch.Tensor) -> torch.Tensor:
        """activation(W·z + b). Compiled, the bias and the activation are recomputed in the backward pass
        (a checkpoint) instead of stored: the compiler then adds the bias inside the activation's kernels, forward
        and backward, and never writes the biased product (B, 2H, L). Eager, one convolution with its bias."""
        weight = self.taps("mix", self.mix.weight)
        if not torch.compiler.is_compiling():
            return self.activation(F.conv1d(z, weight, self.mix.bias))
        return checkpoint(self._biased_activation, F.conv1d(z, weight), self.mix.bias, use_reentrant=False)

    def _biased_activation(self, product: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return self.activation(product + bias[:, None])


class S4DClassifier(nn.Module):
    """Maps (batch, L, d_in) sequences to (batch, classes) logits.

    Taps: `input` (the data), `encoder` and `decoder` (weights), `pooled` (the decoder's input)."""

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
        self.taps = Taps()

    def forward(self, x: torch.Tensor, mode: str = "conv") -> torch.Tensor:
        z = F.linear(self.taps("input", x), self.taps("encoder", self.encoder.weight), self.encoder.bias)
        z = z.transpose(1, 2)  # (B, H, L)
        for block in self.blocks:
            z = block(z, mode)
        pooled = self.taps("pooled", z.mean(dim=-1))
        return F.linear(pooled, self.taps("decoder", self.decoder.weight), self.decoder.bias)

    def ssm_parameters(self) -> list[nn.Parameter]:
        return [p for block in self.blocks for p in block.ssm.ssm_parameters()]
