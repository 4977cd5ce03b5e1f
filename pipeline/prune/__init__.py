"""Pruning: masks on the model's taps, greedy search on the validation set, recovery fine-tune."""
from pipeline.prune.masks import Mask, attach_masks, fractions
from pipeline.prune.search import prune

__all__ = ["Mask", "attach_masks", "fractions", "prune"]
