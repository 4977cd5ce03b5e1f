"""The report stage's work on the models themselves: each model's energy per inference on the simulated chip."""
from __future__ import annotations

from pathlib import Path

from pipeline.config import Config
from pipeline.data.datamodule import load_split
from pipeline.quant import calibrate
from pipeline.steps.evaluate import model_energy, range_batches
from pipeline.steps.qat import quantized_copy
from pipeline.training import ClassifierModule


def energies(config: Config, data: Path, checkpoints: dict[str, Path]) -> dict[str, float]:
    """pJ per inference of each model on the first device's chip; PTQ = the float weights at the QAT bits."""
    settings, x = config.evaluate, load_split(data, "train").tensors[0]
    modules = {name: ClassifierModule.load_from_checkpoint(path, map_location="cpu")
               for name, path in checkpoints.items()}
    modules["PTQ"] = quantized_copy(modules["float"], config.qat)
    calibrate(modules["PTQ"].model, range_batches(x, config.train.batch_size),  # the batches training calibrates on
              modules["PTQ"].eval_mode)
    ranges = range_batches(x, settings.batch_size)
    return {name: model_energy(module, ranges, x.shape[1], settings) for name, module in modules.items()}
