"""The report stage's work on the models themselves: each model's energy per inference on the simulated chip."""
from __future__ import annotations

import json
from pathlib import Path

from pipeline import stage, tracking
from pipeline.config import Config
from pipeline.data.datamodule import load_split
from pipeline.plots import plot_costs, plot_pareto, plot_pruning
from pipeline.quant import calibrate
from pipeline.report import (
    COSTS,
    ReportInputs,
    accuracies,
    costs,
    headline,
    layer_fractions,
    markdown,
    model_points,
    settings,
)
from pipeline.steps.evaluate import duration, model_energy, range_batches
from pipeline.steps.qat import quantized_copy
from pipeline.training import ClassifierModule


def energies(config: Config, data: Path, checkpoints: dict[str, Path]) -> dict[str, float]:
    """pJ per inference of each model on the first device's chip; PTQ = the float weights at the QAT bits."""
    settings, x = config.evaluate, load_split(data, "train").tensors[0]
    modules = {name: ClassifierModule.load(path) for name, path in checkpoints.items()}
    modules["PTQ"] = quantized_copy(modules["float"], config.qat)
    ranges = range_batches(x, config.train.batch_size)
    calibrate(modules["PTQ"].model, ranges, modules["PTQ"].eval_mode)
    return {name: model_energy(module, ranges, x.shape[1], settings) for name, module in modules.items()}


INPUTS = ("pretrain", "qat", "prune", "finetune", "sweep_bits", "noise_robustness", "crossbar")  # metrics files read


def run(config: Config, data: Path, float_model: Path, qat_model: Path, pruned_model: Path, metrics_dir: Path,
         out: Path, costs_plot: Path, pruning_plot: Path, pareto_plot: Path, metrics: Path, headline_metrics: Path
         ) -> None:
    """The `report` stage: the run's report (markdown) with plots of costs (float → PTQ → QAT → pruned), pruning per
    layer and accuracy vs energy of the run's models, beside the plots of the earlier stages; a summary metrics
    file."""
    inputs = {name: json.loads((metrics_dir / f"{name}.json").read_text()) for name in INPUTS}
    energy = energies(config, data, {"float": float_model, "QAT": qat_model, "pruned": pruned_model})
    energy["fine-tuned"] = inputs["crossbar"]["energy/pj_per_inference"]  # mapped by the evaluate stage
    with tracking.stage_run(config, "report") as tracked:
        table = costs(inputs, energy)
        tracked.log_artifact(plot_costs({m: {COSTS[k]: v for k, v in c.items()} for m, c in table.items()},
                                    accuracies(inputs), costs_plot))
        tracked.log_artifact(plot_pruning(layer_fractions(inputs["prune"]), pruning_plot))
        tracked.log_artifact(plot_pareto(model_points(inputs, energy), "on chip", pareto_plot))
        report = markdown(ReportInputs(f"QS4D pipeline report: {config.data.name}", settings(config), inputs, energy,
                                       [duration(t) for t in config.evaluate.times]))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report)
        tracked.log_artifact(out)
        summary = {f"{model}/{key}": value for model, cost in table.items() for key, value in cost.items()}
        tracked.log_metrics(summary)
        tracked.log_artifact(stage.write_metrics(metrics, summary))
        tracked.log_artifact(stage.write_metrics(headline_metrics, headline(inputs)))
    print(f"report: {out}; energy per inference " + ", ".join(f"{m} {e / 1e3:.1f} nJ" for m, e in energy.items()))
