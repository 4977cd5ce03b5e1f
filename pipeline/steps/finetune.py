"""Fine-tuning for the crossbar, under Gaussian weight noise (QS4D) or on the chip's tiles under device draws, and
the robustness curve: test accuracy under analog weight noise of growing σ_rel."""
from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

import torch
from lightning.pytorch.loggers import Logger

from pipeline import stage, tracking
from pipeline.analog.noise import WeightNoise, noise_modules, set_noise
from pipeline.config import Config, FinetuneConfig
from pipeline.data.datamodule import load_split
from pipeline.plots import plot_noise_robustness
from pipeline.scoring import accuracy
from pipeline.steps.qat import on_chip
from pipeline.training import ClassifierModule, fit

WORKDIR = Path("runs/finetune")


def noisy_copy(module: ClassifierModule, sigma: float = 0.0, mixing: bool = False,
               protocol: str = "crossbar") -> ClassifierModule:
    """`module` (its quantizers and masks kept, on its device) with noise taps of `protocol` that train at `sigma`;
    `module` itself if its taps are of that protocol already."""
    if noise_modules(module.model) and module.weight_noise.protocol == protocol:
        return module
    return module.rebuilt(noise=WeightNoise(sigma, mixing, protocol))


def finetune(module: ClassifierModule, config: Config, data_dir: str | Path, workdir: str | Path,
             settings: FinetuneConfig | None = None,
             logger: Logger | None = None) -> tuple[ClassifierModule, dict]:
    """`settings.target` `noise`: train with noise of σ_rel = settings.sigma on the tensors of
    `settings.noise_protocol`, noise-free validation. `chip`: train on the crossbar's tiles under draws of the chip
    device, quantized as deploy at `settings.chip_bits` (`steps.qat.on_chip`), validated as `qat.chip_validation`
    says. A model trained on the tiles already (`qat.target: chip`) trains on them again
    whatever the target: weight noise on top would count the device's error twice (and push slow modes of Ā off the
    unit disc)."""
    settings = settings or config.finetune
    if module.chip is not None:
        trainee = module
    elif settings.target == "chip":
        trainee = on_chip(module, config, settings.chip_bits)
    else:
        trainee = noisy_copy(module, settings.sigma, settings.mixing_noise, settings.noise_protocol)
    return fit(trainee, config, settings, data_dir, workdir, logger)


@torch.no_grad()
def robustness(module: ClassifierModule, x: torch.Tensor, y: torch.Tensor, sigmas: Sequence[float], draws: int,
               seed: int = 0, protocol: str = "crossbar") -> dict[str, dict[str, float]]:
    """{"<σ>": {"mean", "std", "min"}} of the accuracy over `draws` seeded draws per σ of `protocol`'s noise."""
    model = noisy_copy(module, protocol=protocol).model
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


def curve_name(model: str, protocol: str) -> str:
    """A robustness curve's name: the model's, prefixed by the noise protocol unless it is `crossbar`."""
    return model if protocol == "crossbar" else f"{protocol}/{model}"


def run(config: Config, data: Path, model: Path, float_model: Path, qat_model: Path, out: Path, metrics: Path,
         robustness_metrics: Path, plot: Path) -> None:
    """The `finetune` stage: noise-aware fine-tuning of the pruned model → its checkpoint and metrics, and the
    robustness curve of the float, QAT and fine-tuned models on the test samples the crossbar evaluation uses
    (`evaluate.test_samples`) → a metrics file and a plot."""
    settings = config.finetune
    with tracking.stage_run(config, "finetune") as tracked:
        pruned = ClassifierModule.load(model)
        tuned, values = finetune(pruned, config, data, WORKDIR, logger=tracked.lightning_logger())
        x, y = (t[:config.evaluate.test_samples] for t in load_split(data, "test").tensors)  # the chips' samples
        models = {name: ClassifierModule.load(p) for name, p in {"float": float_model, "qat": qat_model}.items()}
        curves = {curve_name(name, protocol): robustness(m, x, y, settings.eval_sigmas, settings.draws, config.seed,
                                                         protocol)
                  for protocol in settings.eval_protocols for name, m in {**models, "finetuned": tuned}.items()}
        for name, curve in curves.items():
            values |= {f"noise/{name}/sigma_{s}/{k}": v for s, point in curve.items() for k, v in point.items()}
        stage.publish(tracked, tuned, values, data, WORKDIR, out, metrics)
        tracked.log_artifact(stage.write_metrics(robustness_metrics, curves))
        tracked.log_artifact(plot_noise_robustness(curves, plot))
        worst = f"{max(settings.eval_sigmas):g}"
        how = f"σ_rel {settings.sigma:g}" if tuned.chip is None else f"on {config.qat.chip_device} tiles"
        print(f"finetune ({how}): noise-free test/acc {values['test/acc']:.4f}; at σ_rel {worst}: "
              + ", ".join(f"{n} {c[worst]['mean']:.4f}±{c[worst]['std']:.4f}" for n, c in curves.items()))
