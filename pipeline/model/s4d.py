"""Diagonal state-space layer (S4D; Gu et al. 2022, "On the parameterization and initialization of diagonal
state space models"), in two execution modes that compute the same map.

Per channel h and complex mode n (N/2 modes, the conjugate half implicit):
    A = −exp(log_A_re) + i·A_im,   B = 1,   Δ = exp(log_dt)
    Ā = exp(ΔA),   B̄ = (exp(ΔA) − 1)/A  (= Δ where A = 0)                 (zero-order hold)
    recurrent:    x_t = Ā⊙x_{t−1} + B̄·u_t,   y_t = 2·Re(C·x_t) + D·u_t
    convolution:  y = K * u + D·u,   K[l] = 2·Re Σₙ Cₙ B̄ₙ Āₙˡ             (FFT or Toeplitz products: causal_conv.py)
Every derived tensor passes a named tap (see taps.py), the identity unless a quantizer, mask or noise is attached.
A third mode, `chip`, runs the layer's crossbar tiles as they compute it: `chip` is then the module attached
for it (analog/in_the_loop.py), called as chip(layer, u).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.model.causal_conv import causal_conv
from pipeline.model.taps import Taps

# The one-pass kernel generation runs on CUDA devices only, so it is loaded only where there is one (causal_conv.py).
vandermonde = None
if torch.cuda.is_available():
    try:
        from pipeline.model import vandermonde
    except ImportError:
        pass

Mode = str  # "conv" | "recurrent" | "chip"


def runs_in_one_pass(p: torch.Tensor) -> bool:
    """Triton installed and log Ā's real part p on a CUDA device in float32 (vandermonde.py)."""
    return vandermonde is not None and p.is_cuda and p.dtype == torch.float32


def _nonzero(z: torch.Tensor) -> torch.Tensor:
    """z with entries of magnitude below 1e-30 set to 1e-30 (a mode quantized to zero has log Ā = −69)."""
    return torch.where(z.abs() < 1e-30, torch.full_like(z, 1e-30), z)


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
        self.taps = Taps()
        self.chip: nn.Module | None = None

    def _continuous_parts(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(Re A, Im A, Δ) through taps A_re, A_im, log_dt; Δ of shape (H, 1)."""
        return (self.taps("A_re", -torch.exp(self.log_A_re)), self.taps("A_im", self.A_im),
                torch.exp(self.taps("log_dt", self.log_dt)).unsqueeze(-1))

    def _output_parts(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(Re C, Im C) through taps C_pair (the (re, im) pairs as one tensor), C_re, C_im."""
        C = self.taps("C_pair", self.C)
        return self.taps("C_re", C[..., 0]), self.taps("C_im", C[..., 1])

    def _zoh(self) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor],
                            tuple[torch.Tensor, torch.Tensor]]:
        """ΔA = (p, q), Ā = eᵖ(cos q, sin q) and B̄ = (Ā − 1)·conj(A)/|A|² (= Δ where A = 0), each as a real
        (re, im) pair: torch.compile fuses real arithmetic into a few kernels and runs complex tensors op by op."""
        a_re, a_im, dt = self._continuous_parts()
        p, q = dt * a_re, dt * a_im
        growth = torch.exp(p)
        bar_re, bar_im = growth * torch.cos(q), growth * torch.sin(q)
        norm = a_re * a_re + a_im * a_im
        zero = norm == 0
        norm = torch.where(zero, torch.ones_like(norm), norm)
        b_re = torch.where(zero, dt.expand_as(norm), ((bar_re - 1) * a_re + bar_im * a_im) / norm)
        b_im = torch.where(zero, torch.zeros_like(norm), (bar_im * a_re - (bar_re - 1) * a_im) / norm)
        return (p, q), (bar_re, bar_im), (b_re, b_im)

    def continuous(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(A, Δ) with A complex of shape (H, N/2) and Δ of shape (H, 1), through taps A_re, A_im, log_dt."""
        a_re, a_im, dt = self._continuous_parts()
        return torch.complex(a_re, a_im), dt

    def output_matrix(self) -> torch.Tensor:
        """C as a complex (H, N/2) tensor, through taps C_pair, C_re, C_im."""
        return torch.complex(*self._output_parts())

    def discrete(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(Ā, B̄, C, D) as stored on hardware, through taps A_bar, B_bar, C, D."""
        _, A_bar, B_bar = self._zoh()
        return (self.taps("A_bar", torch.complex(*A_bar)), self.taps("B_bar", torch.complex(*B_bar)),
                self.taps("C", self.output_matrix()), self.taps("D", self.D))

    def kernel(self, length: int) -> torch.Tensor:
        """K[h, l] = 2·Re Σₙ Cₙ B̄ₙ Āₙˡ = 2 Σₙ e^{l·pₙ}·(Re(CB̄)ₙ·cos(l·qₙ) − Im(CB̄)ₙ·sin(l·qₙ)) with log Ā = p + i·q,
        shape (H, L), through tap `kernel`; in real arithmetic throughout, which torch.compile fuses into a few
        kernels (forward and backward), or in one Triton pass each way where `runs_in_one_pass` allows.

        log Ā = ΔA, unless a tap changes Ā, B̄ or C: the kernel is then that of the values as stored (`discrete`),
        with log Ā from Ā and |Ā| capped at 1: a tap (weight noise) that pushes a slow mode outside the unit circle
        would make Āˡ overflow over a long sequence, so such a mode is taken as marginally stable instead."""
        if any(name in self.taps for name in ("A_bar", "B_bar", "C")):
            A_bar, B_bar, C, _ = self.discrete()
            log_A_bar = torch.log(_nonzero(A_bar))
            p, q = log_A_bar.real.clamp(max=0.0), log_A_bar.imag
            weight = C * B_bar
            w_re, w_im = weight.real, weight.imag
        else:
            (p, q), _, (b_re, b_im) = self._zoh()
            c_re, c_im = self._output_parts()
            w_re, w_im = c_re * b_re - c_im * b_im, c_re * b_im + c_im * b_re
        if runs_in_one_pass(p):
            return self.taps("kernel", vandermonde.vandermonde(p, q, w_re, w_im, length))
        steps = torch.arange(length, device=p.device, dtype=p.dtype)
        decay, angle = p.unsqueeze(-1) * steps, q.unsqueeze(-1) * steps  # (H, N/2, L)
        terms = torch.exp(decay) * (w_re.unsqueeze(-1) * torch.cos(angle) - w_im.unsqueeze(-1) * torch.sin(angle))
        return self.taps("kernel", 2 * terms.sum(1))

    def forward(self, u: torch.Tensor, mode: Mode = "conv") -> torch.Tensor:
        """y of u through tap `u` (the layer's own input, which the skip D·u sees as well)."""
        u = self.taps("u", u)
        if mode == "conv":
            return self._convolve(u)
        if mode == "recurrent":
            return self._recur(u)
        if mode == "chip" and self.chip is not None:
            return self.chip(self, u)
        raise ValueError(f"mode = {mode!r}: allowed 'conv', 'recurrent', or 'chip' with tile arithmetic attached")

    def _convolve(self, u: torch.Tensor) -> torch.Tensor:
        """y = K' * u with K'[0] = K[0] + D: the skip D·u rides along in the convolution."""
        k = self.kernel(u.shape[-1])
        return causal_conv(u, k + F.pad(self.taps("D", self.D).unsqueeze(-1), (0, k.shape[-1] - 1)))

    def _recur(self, u: torch.Tensor) -> torch.Tensor:
        """x_t = tap_state(Ā⊙x_{t−1} + B̄·u_t) (the state as digitised each step), y_t = 2·Re(C·x_t) + D·u_t."""
        A_bar, B_bar, C, D = self.discrete()
        state = torch.zeros(u.shape[0], *A_bar.shape, dtype=A_bar.dtype, device=u.device)
        outputs = []
        for t in range(u.shape[-1]):
            u_t = u[..., t]
            state = self.taps("state", A_bar * state + B_bar * u_t.unsqueeze(-1))
            outputs.append(2 * (C * state).sum(-1).real + D * u_t)
        return torch.stack(outputs, dim=-1)

    def ssm_parameters(self) -> list[nn.Parameter]:
        """log Δ and A: trained with a small learning rate and no weight decay."""
        return [self.log_dt, self.log_A_re, self.A_im]
