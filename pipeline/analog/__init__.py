"""Analog hardware: weight noise (and, to come, the crossbar simulator)."""
from pipeline.analog.noise import Noise, attach_noise, noise_modules, set_noise

__all__ = ["Noise", "attach_noise", "noise_modules", "set_noise"]
