"""Per-component bit sweep (the data of QS4D's main figure): each component quantized alone, and `all`, at
each bit width; test accuracy after PTQ and after a short QAT, everything else in float."""
from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from pipeline import stage, tracking
from pipeline.config import Config
from pipeline.plots import plot_bit_sweep
from pipeline.steps.qat import quantized_copy, train
from pipeline.training import ClassifierModule, evaluate, for_short_runs

WORKDIR = Path("runs/sweep_bits")


def sweep_bits(float_module: ClassifierModule, config: Config, data_dir: str | Path, workdir: str | Path,
               log: Callable[[dict], None] | None = None) -> dict:
    """{"float": acc, "<component>": {"<bits>": {"ptq": acc, "qat": acc}}} on the test split."""
    sweep = config.sweep_bits
    base = config.qat
    results: dict = {"float": evaluate(quantized_copy(float_module, base.model_copy(
        update={"bits": {}})), config, data_dir, validate=False)["test/acc"]}
    for component in sweep.components:
        for width in sweep.bits:
            qat = base.model_copy(update={"bits": {component: width}, "epochs": sweep.epochs})
            ptq = evaluate(quantized_copy(float_module, qat), config, data_dir, validate=False)["test/acc"]
            run_dir = Path(workdir) / f"{component}-{width}"
            _, metrics = train(float_module, for_short_runs(config), data_dir, run_dir, qat)
            shutil.rmtree(run_dir, ignore_errors=True)
            results.setdefault(component, {})[str(width)] = {"ptq": ptq, "qat": metrics["test/acc"]}
            print(f"sweep {component}={width} bits: PTQ {ptq:.4f}, QAT {metrics['test/acc']:.4f}", flush=True)
            if log:
                log({f"sweep/{component}/{width}/ptq": ptq, f"sweep/{component}/{width}/qat": metrics["test/acc"]})
    return results


def run(config: Config, data: Path, float_model: Path, metrics: Path, plot: Path) -> None:
    """The `sweep_bits` stage: PTQ and QAT test accuracy per component and bit width → a metrics file and a plot."""
    with tracking.stage_run(config, "sweep_bits") as tracked:
        float_module = ClassifierModule.load(float_model)
        results = sweep_bits(float_module, config, data, WORKDIR, log=tracked.log_metrics)
        shutil.rmtree(WORKDIR, ignore_errors=True)
        tracked.log_artifact(stage.write_metrics(metrics, results))
        tracked.log_artifact(plot_bit_sweep(results, plot))
        settings = sum(len(widths) for component, widths in results.items() if component != "float")
        print(f"sweep_bits: {settings} settings (each printed above) → {metrics}, {plot}")
