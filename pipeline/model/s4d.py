"""Diagonal state-space layer (S4D; Gu et al. 2022, "On the parameterization and initialization of diagonal
state space models"), in two execution modes that compute the same map.

Per channel h and complex mode n (N/2 modes, the conjugate half implicit):
    A = −exp(log_A_re) + i·A_im,   B = 1,   Δ = exp(log_dt)
    Ā = exp(ΔA),   B̄ = (exp(ΔA) − 1)/A                                   (zero-order hold)
    recurrent:    x_t = Ā⊙x_{t−1} + B̄·u_t,   y_t = 2·Re(C·x_t) + D·u_t
    convolution:  y = K * u + D·u,   K[l] = 2·Re Σₙ Cₙ B̄ₙ Āₙˡ             (FFT of length 2L)
"""
from __future__ import annotations

import math

import torch
from torch import nn

Mode = str  # "conv" | "recurrent"


class S4D(nn.Module):
    """S4D layer on inputs of shape (batch, H, L)."""

    def __init__(self, d_model: int, d_state: int = 64, a_init: str = "lin",
                 dt_min: float = 1e-3, dt_max: float = 1e-1):
        super().__init__()
        if a_init not in ("lin", "qs4d"):
            raise ValueError(f"a_init = {a_init!r}: allowed 'lin' (S4D-Lin, π·n) or 'qs4d' ((π/4)·n)")
        modes = d_state // 2
        log_dt = torch.rand(d_model) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        frequency = math.pi if a_init == "lin" else math.pi / 4
        self.log_dt = nn.Parameter(log_dt)
        self.log_A_re = nn.Parameter(torch.full((d_model, modes), math.log(0.5)))
        self.A_im = nn.Parameter(frequency * torch.arange(modes).float().expand(d_model, modes).clone())
        # C is complex; stored as (re, im) pairs so that optimisers and parametrizations see real tensors.
        self.C = nn.Parameter(torch.randn(d_model, modes, 2) * math.sqrt(0.5))
        self.D = nn.Parameter(torch.randn(d_model))

    def _continuous(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(A, ΔA) as complex tensors of shape (H, N/2)."""
        A = torch.complex(-torch.exp(self.log_A_re), self.A_im)
        return A, A * torch.exp(self.log_dt).unsqueeze(-1)

    def discrete(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(Ā, B̄, C) as complex tensors of shape (H, N/2)."""
        A, dtA = self._continuous()
        A_bar = torch.exp(dtA)
        return A_bar, (A_bar - 1) / A, torch.view_as_complex(self.C.contiguous())

    def kernel(self, length: int) -> torch.Tensor:
        """K[h, l] = 2·Re Σₙ Cₙ B̄ₙ Āₙˡ, shape (H, L), with Āˡ = exp(l·ΔA) (a Vandermonde product)."""
        A, dtA = self._continuous()
        B_bar = (torch.exp(dtA) - 1) / A
        C = torch.view_as_complex(self.C.contiguous())
        steps = torch.arange(length, device=dtA.device, dtype=dtA.real.dtype)
        powers = torch.exp(dtA.unsqueeze(-1) * steps)  # (H, N/2, L)
        return 2 * torch.einsum("hn,hnl->hl", C * B_bar, powers).real

    def forward(self, u: torch.Tensor, mode: Mode = "conv") -> torch.Tensor:
        if mode == "conv":
            return self._convolve(u)
        if mode == "recurrent":
            return self._recur(u)
        raise ValueError(f"mode = {mode!r}: allowed 'conv' or 'recurrent'")

    def _convolve(self, u: torch.Tensor) -> torch.Tensor:
        length = u.shape[-1]
        k = self.kernel(length)
        y = torch.fft.irfft(torch.fft.rfft(u, n=2 * length) * torch.fft.rfft(k, n=2 * length), n=2 * length)
        return y[..., :length] + self.D.unsqueeze(-1) * u

    def _recur(self, u: torch.Tensor) -> torch.Tensor:
        A_bar, B_bar, C = self.discrete()
        state = torch.zeros(u.shape[0], *A_bar.shape, dtype=A_bar.dtype, device=u.device)
        outputs = []
        for t in range(u.shape[-1]):
            u_t = u[..., t]
            state = A_bar * state + B_bar * u_t.unsqueeze(-1)
            outputs.append(2 * (C * state).sum(-1).real + self.D * u_t)
        return torch.stack(outputs, dim=-1)

    def ssm_parameters(self) -> list[nn.Parameter]:
        """log Δ and A: trained with a small learning rate and no weight decay."""
        return [self.log_dt, self.log_A_re, self.A_im]
