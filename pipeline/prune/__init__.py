"""Pruning: masks on the model's taps, a skip-on-failure search on a held-out split, recovery fine-tune."""
from pipeline.prune.masks import Mask, attach_masks, fractions
from pipeline.prune.search import prune

__all__ = ["Mask", "attach_masks", "fractions", "prune"]
