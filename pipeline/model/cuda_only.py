"""Loading the model's Triton modules only in a process that has a CUDA device: their imports (Triton,
torch._dynamo) take a CPU-only process about 2 s, and Triton ships for Linux x86-64 only."""
from __future__ import annotations

import importlib
from types import ModuleType

import torch


def load(name: str) -> ModuleType | None:
    """pipeline.model.`name`, or None without a CUDA device or without Triton."""
    if not torch.cuda.is_available():
        return None
    try:
        return importlib.import_module(f"pipeline.model.{name}")
    except ImportError:
        return None
