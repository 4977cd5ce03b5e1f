"""Device presets for the crossbar simulator, each value with its source.

Select them in params (`evaluate.devices`), change single values with `evaluate.device_overrides`, or define new
ones in `evaluate.custom_devices`. Programming-noise polynomials are given in µS as published and divided by
the reference g_max of the fit, so that σ/g_max is a polynomial in G/g_max.
"""
from __future__ import annotations

from pydantic import Field, model_validator

from pipeline.section import Section

MICRO = 1e-6


class DeviceConfig(Section):
    """A memory device for the crossbar simulator; conductances in siemens, noise relative to g_max.

    Programming noise std at time t after programming: σ(G, t) = g_max·Σᵢ cᵢ·(G/g_max)ⁱ with the coefficients
    `prog_noise[t]`, interpolated in log t between the listed times and held outside them."""

    g_min: float = Field(ge=0)
    g_max: float = Field(gt=0)
    levels: int | None = Field(None, ge=2, description="programmable levels in [g_min, g_max]; null = analog")
    prog_noise: dict[float, list[float]] = Field(default_factory=lambda: {1.0: [0.0]},
                                                 description="time (s) → σ/g_max polynomial in G/g_max")
    read_noise: float = Field(0.0, ge=0, description="std per cell and read, relative to g_max")
    drift_nu: float = Field(0.0, ge=0, description="mean drift exponent ν of G(t) = G₀·(t/t0)^−ν")
    drift_nu_std: float = Field(0.0, ge=0, description="device-to-device spread of ν")
    drift_t0: float = Field(20.0, gt=0, description="s; no drift before t0")
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
    # PCM, from aihwkit's PCMLikeNoiseModel (Nandakumar et al., ICECS 2019; 1 million IBM PCM devices):
    # g_max 25 µS, g_min 0; programming noise σ = 0.26348 + 1.9650·g − 1.1731·g² µS (g = G/g_max); drift
    # ν ~ N(0.049, 0.009) for G ≥ 0.3·g_max (the model's mean is clamped at 0.049 and its spread at 0.008 there),
    # t0 = 20 s; read (1/f) noise amplitude Q_s = 0.0088 at G = g_max, taken here as the std of one read.
    "pcm": DeviceConfig(
        g_min=0.0, g_max=25 * MICRO,
        prog_noise={1.0: _relative((0.26348, 1.9650, -1.1731), 25)},
        read_noise=0.0088, drift_nu=0.049, drift_nu_std=0.009, drift_t0=20.0,
    ),
}
# Stuck-at faults, IR drop and finite levels are not part of the cited models: 0 / analog in every preset;
# set them with evaluate.device_overrides to study their effect.
