"""Analog hardware: weight noise, device presets, tile mapping, the crossbar simulator and program files."""
from pipeline.analog.noise import Noise, WeightNoise, attach_noise, noise_modules, set_noise

__all__ = ["Noise", "WeightNoise", "attach_noise", "noise_modules", "set_noise"]
