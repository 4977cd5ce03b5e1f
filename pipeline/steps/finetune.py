"""Noise-aware fine-tuning and the robustness curve: test accuracy under analog weight noise of growing σ_rel."""
from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

import torch

from pipeline.analog.noise import noise_modules, set_noise
from pipeline.config import Config, FinetuneConfig
from pipeline.scoring import accuracy
from pipeline.training import ClassifierModule, MetricsSink, fit


def noisy_copy(module: ClassifierModule, sigma: float = 0.0, mixing: bool = False) -> ClassifierModule:
    """`module` (its quantizers and masks kept, on its device) with noise taps that train at `sigma`."""
    if noise_modules(module.model):
        return module
    return module.rebuilt(noise={"sigma": sigma, "mixing": mixing})


def finetune(module: ClassifierModule, config: Config, data_dir: str | Path, workdir: str | Path,
             settings: FinetuneConfig | None = None,
             sink: MetricsSink | None = None) -> tuple[ClassifierModule, dict]:
    """Train with noise of σ_rel = settings.sigma on every crossbar-mapped tensor; noise-free validation."""
    settings = settings or config.finetune
    return fit(noisy_copy(module, settings.sigma, settings.mixing_noise), config, settings, data_dir, workdir, sink)


@torch.no_grad()
def robustness(module: ClassifierModule, x: torch.Tensor, y: torch.Tensor, sigmas: Sequence[float], draws: int,
               seed: int = 0) -> dict[str, dict[str, float]]:
    """{"<σ>": {"mean", "std", "min"}} of the accuracy over `draws` seeded noise draws per σ."""
    model = noisy_copy(module).model
    curve = {}
    for sigma in sigmas:
        set_noise(model, sigma)
        accs = []
        for draw in range(draws if sigma > 0 else 1):
            torch.manual_seed(seed + draw)
            accs.append(accuracy(model, x, y, module.eval_mode))
        curve[f"{sigma:g}"] = {"mean": statistics.fmean(accs), "std": statistics.pstdev(accs), "min": min(accs)}
    set_noise(model, 0.0)
    return curve
