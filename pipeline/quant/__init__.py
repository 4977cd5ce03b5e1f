"""Fake quantization: the quantizer, and its attachment to a model per component (QAT and PTQ)."""
from pipeline.quant.attach import calibrate, quantize, quantizers, tap_points
from pipeline.quant.quantizer import Quantizer

__all__ = ["Quantizer", "calibrate", "quantize", "quantizers", "tap_points"]
