"""Fake quantization: the quantizer, and its attachment to a model per component (QAT and PTQ)."""
from pipeline.quant.attach import Quantization, calibrate, quantize, quantizers, tap_points
from pipeline.quant.quantizer import Quantizer

__all__ = ["Quantization", "Quantizer", "calibrate", "quantize", "quantizers", "tap_points"]
