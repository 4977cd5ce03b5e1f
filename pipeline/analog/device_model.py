"""Device physics of programmed chips: programming noise, drift and its compensation, faults, IR drop and read
noise, drawn once per chip and cell and evaluated at a time after programming (module docstring of simulator.py)."""
from __future__ import annotations

import math

import torch

from pipeline.analog.devices import DeviceConfig
from pipeline.analog.mapping import TileProgram

READ_TIME_1F = 250e-9  # s, t_read of the 1/f fit (aihwkit's PCMLikeNoiseModel)


def drift_exponents(g_rel: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """PCM drift exponents (Nandakumar et al., ICECS 2019, as in aihwkit): ν = |μ + σ·z| with
    μ = clip(−0.0155·ln g + 0.0244, 0.049, 0.1) and σ = clip(−0.0125·ln g − 0.0059, 0.008, 0.045), g = G/g_max
    (at least 1e-7): low conductances drift faster and spread more."""
    log_g = torch.log(g_rel.abs().clamp_min(1e-7))
    mean = (-0.0155 * log_g + 0.0244).clamp(0.049, 0.1)
    spread = (-0.0125 * log_g - 0.0059).clamp(0.008, 0.045)
    return (mean + spread * z).abs()


def flicker_std(g_rel: torch.Tensor, amplitude: float, t: float, t0: float) -> torch.Tensor:
    """Relative std of PCM's accumulated 1/f read noise t seconds after programming (Nandakumar et al., as in
    aihwkit, with their clock t + t0): Q_s·√ln((t + t0 + t_r)/(2·t_r)), Q_s = min(0.2, amplitude / max(g^0.65,
    1e-3)), g = G/g_max, t_r = 250 ns; the noise is this std times |G(t)|."""
    q = (amplitude / (g_rel.abs() ** 0.65).clamp_min(1e-3)).clamp(max=0.2)
    return q * math.sqrt(math.log((t + t0 + READ_TIME_1F) / (2 * READ_TIME_1F)))


class Chips:
    """`count` chips programmed with one layer's `TileProgram` on `device`: the random draws of each cell
    (programming noise, drift exponent, faults, and the 1/f noise's normal deviates) are made once; `weights(t)`
    gives the effective tiles at t."""

    def __init__(self, tiles: TileProgram, device: DeviceConfig, count: int, generator: torch.Generator | None):
        self.tiles, self.device = tiles, device
        shape = (count, 2, *tiles.g_plus.shape)  # chip, G+/G−, H, T, R, K
        on = tiles.g_plus.device  # draws from `generator` (on that device), or the global one if None

        def draw():
            return torch.randn(shape, generator=generator, dtype=torch.float64, device=on)

        self.z, nu = draw(), draw()
        self.target = torch.stack([tiles.g_plus, tiles.g_minus]).to(torch.float64)  # (G+/G−, H, T, R, K)
        self.nu = (drift_exponents(self.target / device.g_max, nu) if device.drift_nu_model == "nandakumar"
                   else (device.drift_nu + device.drift_nu_std * nu).clamp_min(0))
        fault = torch.rand(shape, generator=generator, dtype=torch.float64, device=on)
        self.z_flicker = draw() if device.flicker_noise > 0 else None  # drawn last: other devices' draws unchanged
        self.stuck_off, self.stuck_on = fault < device.stuck_off, (fault >= device.stuck_off) & (
            fault < device.stuck_off + device.stuck_on)
        H, T, R, K = tiles.g_plus.shape
        along_row = torch.arange(2 * K, dtype=torch.float64, device=on).view(K, 2) / max(2 * K - 1, 1)  # column
        along_col = (R - 1 - torch.arange(R, dtype=torch.float64, device=on)) / max(R - 1, 1)  # rows from the ADC
        self.distance = (along_row.T[:, None, :] + along_col[None, :, None]) / 2  # (2, R, K), made on `on`: no copy

    def _sigma(self, g: torch.Tensor, t: float) -> torch.Tensor:
        """Programming-noise std at t: the device's polynomials interpolated in log t."""
        times = sorted(self.device.prog_noise)
        g_rel = g / self.device.g_max

        def at(key):
            return self.device.g_max * sum(c * g_rel ** i for i, c in enumerate(self.device.prog_noise[key]))

        if t <= times[0] or len(times) == 1:
            return at(times[0]).clamp_min(0)
        if t >= times[-1]:
            return at(times[-1]).clamp_min(0)
        hi = next(i for i, k in enumerate(times) if k >= t)
        lo_t, hi_t = times[hi - 1], times[hi]
        w = (math.log(t) - math.log(lo_t)) / (math.log(hi_t) - math.log(lo_t))
        return ((1 - w) * at(lo_t) + w * at(hi_t)).clamp_min(0)

    def conductances(self, t: float) -> torch.Tensor:
        """(chip, G+/G−, H, T, R, K) in siemens at t seconds after programming."""
        d = self.device
        programmed = (self.target + self._sigma(self.target, t) * self.z).clamp_min(0)
        g = programmed * (max(t, d.drift_t0) / d.drift_t0) ** (-self.nu)
        if self.z_flicker is not None:
            g = (g + g * flicker_std(programmed / d.g_max, d.flicker_noise, t, d.drift_t0) * self.z_flicker
                 ).clamp_min(0)
        g = torch.where(self.stuck_off, d.g_min, torch.where(self.stuck_on, d.g_max, g))
        g = g * (1 - d.ir_drop * self.distance[:, None, None])
        return g * self.tiles.present

    def weights(self, t: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(effective weights (C, H, T, R, K) in signal units per DAC unit, read-noise std per unit (C, H, T, K)):
        (G+ − G−)·gain / k (k the row's attenuation), times the global drift compensation
        Σ|ΔG(min(t, t0))| / Σ|ΔG(t)| of each tile."""
        def differential(time):
            g = self.conductances(time)
            return g[:, 0] - g[:, 1]

        delta = differential(t)
        reference = differential(min(t, self.device.drift_t0)) if t > self.device.drift_t0 else delta
        compensation = reference.abs().sum((-2, -1)) / delta.abs().sum((-2, -1)).clamp_min(1e-30)
        gain = self.tiles.gain.to(delta) * compensation[..., None]
        attenuation = self.tiles.row_gain.to(delta)[..., None]
        return delta * gain[..., None, :] / attenuation, self.device.read_noise * self.device.g_max * gain
