"""Device presets for the crossbar simulator, each value with its source.

Select them in params (`evaluate.devices`), change single values with `evaluate.device_overrides`, or define new
ones in `evaluate.custom_devices`. Programming-noise polynomials are given in µS as published and divided by
the reference g_max of the fit, so that σ/g_max is a polynomial in G/g_max.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipeline.section import Section

MICRO = 1e-6


class DeviceConfig(Section):
    """A memory device for the crossbar simulator; conductances in siemens, noise relative to g_max.

    Programming noise std at time t after programming: σ(G, t) = g_max·Σᵢ cᵢ·(G/g_max)ⁱ with the coefficients
    `prog_noise[t]`, interpolated in log t between the listed times and held outside them (beyond the last time
    the spread stays that of the last time: an extrapolation). Drift exponents ν per cell: `constant`, drawn from
    N(drift_nu, drift_nu_std²); `nandakumar`, PCM's conductance-dependent statistics (device_model.drift_exponents).
    `flicker_noise` > 0 adds PCM's accumulated 1/f read noise, which grows with the time since programming
    (device_model.flicker_std)."""

    g_min: float = Field(ge=0)
    g_max: float = Field(gt=0)
    levels: int | None = Field(None, ge=2, description="programmable levels in [g_min, g_max]; null = analog")
    prog_noise: dict[float, list[float]] = Field(default_factory=lambda: {1.0: [0.0]},
                                                 description="time (s) → σ/g_max polynomial in G/g_max")
    read_noise: float = Field(0.0, ge=0, description="std per cell and read, relative to g_max")
    drift_nu: float = Field(0.0, ge=0, description="mean drift exponent ν of G(t) = G₀·(t/t0)^−ν")
    drift_nu_std: float = Field(0.0, ge=0, description="device-to-device spread of ν")
    drift_t0: float = Field(20.0, gt=0, description="s; no drift before t0")
    drift_nu_model: Literal["constant", "nandakumar"] = Field(
        "constant", description="constant: ν ~ N(drift_nu, drift_nu_std²); nandakumar: mean and spread of ν depend "
        "on the programmed conductance (PCM, Nandakumar et al. 2019); drift_nu and drift_nu_std are then unused")
    flicker_noise: float = Field(0.0, ge=0, description="1/f read noise amplitude Q_s at G = g_max (PCM: 0.0088); "
                                 "its std grows as √ln(t) after programming; 0 = none")
    stuck_off: float = Field(0.0, ge=0, le=1, description="fraction of cells stuck at g_min")
    stuck_on: float = Field(0.0, ge=0, le=1, description="fraction of cells stuck at g_max")
    ir_drop: float = Field(0.0, ge=0, lt=1, description="attenuation of the cell farthest from driver and ADC")

    @model_validator(mode="after")
    def _check(self) -> DeviceConfig:
        if self.g_min >= self.g_max:
            raise ValueError(f"g_min = {self.g_min} must be < g_max = {self.g_max}")
        if self.stuck_off + self.stuck_on > 1:
            raise ValueError(f"stuck_off + stuck_on = {self.stuck_off + self.stuck_on}: must be ≤ 1")
        if not self.prog_noise or any(t <= 0 or not c for t, c in self.prog_noise.items()):
            raise ValueError(f"prog_noise = {self.prog_noise}: needs ≥ 1 time > 0, each with ≥ 1 coefficient")
        return self


def _relative(coefficients_us: tuple[float, ...], g_max_us: float) -> list[float]:
    return [c / g_max_us for c in coefficients_us]


PRESETS: dict[str, DeviceConfig] = {
    # No non-ideality: with infinite converter resolution the simulator reproduces the software model.
    "ideal": DeviceConfig(g_min=0.0, g_max=25 * MICRO),
    # RRAM (TaOx/HfOx 1T1R, NeuRRAM chip), as fitted by aihwkit's ReRamWan2022NoiseModel to Wan et al.,
    # Nature 608, 504 (2022): g_max 40 µS (the fit's reference), g_min 0 (aihwkit's pair converter: one device of
    # the pair at 0); the spread of the programmed conductance measured 1 s, 1 day and 2 days after programming
    # (4th-order polynomials, µS) — RRAM relaxes rather than drifting as a power law, so ν = 0. Read noise "about
    # 1%" (the same model's documentation).
    "rram": DeviceConfig(
        g_min=0.0, g_max=40 * MICRO,
        prog_noise={1.0: _relative((0.348, 16.030, -43.853, 45.393, -16.815), 40),
                    86400.0: _relative((0.701, 22.086, -50.773, 47.095, -16.458), 40),
                    172800.0: _relative((0.782, 20.274, -43.507, 37.062, -11.934), 40)},
        read_noise=0.01,
    ),
    # PCM, the statistical model of Nandakumar et al. (ICECS 2019; 1 million IBM PCM devices) as aihwkit's
    # PCMLikeNoiseModel implements it: g_max 25 µS, g_min 0; programming noise σ = 0.26348 + 1.9650·g − 1.1731·g² µS
    # (g = G/g_max); drift from t0 = 20 s with ν's mean and spread depending on G (device_model.drift_exponents);
    # accumulated 1/f read noise of amplitude Q_s = 0.0088 at g_max, growing with the time since programming
    # (device_model.flicker_std). The model has no other read noise.
    "pcm": DeviceConfig(
        g_min=0.0, g_max=25 * MICRO,
        prog_noise={1.0: _relative((0.26348, 1.9650, -1.1731), 25)},
        drift_nu_model="nandakumar", flicker_noise=0.0088, drift_t0=20.0,
    ),
}
# Stuck-at faults, IR drop and finite levels are not part of the cited models: 0 / analog in every preset;
# set them with evaluate.device_overrides to study their effect.
