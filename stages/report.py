"""Stage `report`: the run's report (markdown) with plots of costs (float → PTQ → QAT → pruned), pruning per layer
and accuracy vs energy of the run's models, beside the plots of the earlier stages; a summary metrics file."""
import json
from pathlib import Path

from pipeline import stage, tracking
from pipeline.config import Config
from pipeline.plots import plot_costs, plot_pareto, plot_pruning
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
from pipeline.steps.evaluate import duration
from pipeline.steps.report import energies

INPUTS = ("pretrain", "qat", "prune", "finetune", "sweep_bits", "noise_robustness", "crossbar")  # metrics files read


def main(config: Config, data: Path, float_model: Path, qat_model: Path, pruned_model: Path, metrics_dir: Path,
         out: Path, costs_plot: Path, pruning_plot: Path, pareto_plot: Path, metrics: Path, headline_metrics: Path
         ) -> None:
    inputs = {name: json.loads((metrics_dir / f"{name}.json").read_text()) for name in INPUTS}
    energy = energies(config, data, {"float": float_model, "QAT": qat_model, "pruned": pruned_model})
    energy["fine-tuned"] = inputs["crossbar"]["energy/pj_per_inference"]  # mapped by the evaluate stage
    with tracking.stage_run(config, "report") as run:
        table = costs(inputs, energy)
        run.log_artifact(plot_costs({m: {COSTS[k]: v for k, v in c.items()} for m, c in table.items()},
                                    accuracies(inputs), costs_plot))
        run.log_artifact(plot_pruning(layer_fractions(inputs["prune"]), pruning_plot))
        run.log_artifact(plot_pareto(model_points(inputs, energy), "on chip", pareto_plot))
        report = markdown(ReportInputs(f"QS4D pipeline report: {config.data.name}", settings(config), inputs, energy,
                                       [duration(t) for t in config.evaluate.times]))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report)
        run.log_artifact(out)
        summary = {f"{model}/{key}": value for model, cost in table.items() for key, value in cost.items()}
        run.log_metrics(summary)
        run.log_artifact(stage.write_metrics(metrics, summary))
        run.log_artifact(stage.write_metrics(headline_metrics, headline(inputs)))
    print(f"report: {out}; energy per inference " + ", ".join(f"{m} {e / 1e3:.1f} nJ" for m, e in energy.items()))


if __name__ == "__main__":
    stage.run(main, "data", "float_model", "qat_model", "pruned_model", "metrics_dir", "out", "costs_plot",
              "pruning_plot", "pareto_plot", "metrics", "headline_metrics")
