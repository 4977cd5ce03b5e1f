"""S4D layer (convolution and recurrent modes) and the sequence classifier built from it."""
from pipeline.model.classifier import S4DClassifier
from pipeline.model.s4d import S4D

__all__ = ["S4D", "S4DClassifier"]
