"""Stage `report`: report/report.md with the plots of costs (float → PTQ → QAT → pruned), pruning per layer and
accuracy vs energy over the MLflow experiment's runs, beside the plots of the earlier stages."""
import json
from pathlib import Path

from pipeline import stage, tracking
from pipeline.analog.evaluation import duration, model_energy, range_batches
from pipeline.config import Config
from pipeline.data.datamodule import load_split
from pipeline.plots import plot_costs, plot_pareto, plot_pruning
from pipeline.quant import calibrate
from pipeline.quant.ptq import quantized_copy
from pipeline.report import COSTS, ReportInputs, accuracies, costs, layer_fractions, markdown
from pipeline.runs import markdown_table, pipeline_runs
from pipeline.training import ClassifierModule

DATA, METRICS, OUT = Path("data/prepared"), Path("metrics"), Path("report/report.md")
CHECKPOINTS = {"float": "models/pretrain.ckpt", "QAT": "models/qat.ckpt", "pruned": "models/prune.ckpt"}
INPUTS = ("pretrain", "qat", "prune", "noise_robustness", "crossbar", "sweep_bits")
PLOTS = {"costs": Path("plots/costs.png"), "pruning": Path("plots/pruning.png"), "pareto": Path("plots/pareto.png")}
EARLIER_PLOTS = ("sweep_bits", "noise_robustness", "crossbar_accuracy", "energy")
RUNS_SHOWN = 10


def energies(config: Config) -> dict[str, float]:
    """pJ per inference of each model on the first device's chip; PTQ = the float weights at the QAT bits."""
    settings, x = config.evaluate, load_split(DATA, "train").tensors[0]
    modules = {name: ClassifierModule.load_from_checkpoint(path, map_location="cpu")
               for name, path in CHECKPOINTS.items()}
    modules["PTQ"] = quantized_copy(modules["float"], config, DATA, config.qat)
    calibrate(modules["PTQ"].model, range_batches(x, config.train.batch_size),  # the batches training calibrates on
              modules["PTQ"].eval_mode)
    ranges = range_batches(x, settings.batch_size)
    return {name: model_energy(module, ranges, x.shape[1], settings) for name, module in modules.items()}


def main(config: Config) -> None:
    metrics = {name: json.loads((METRICS / f"{name}.json").read_text()) for name in INPUTS}
    energy = energies(config)
    pid = tracking.pipeline_id(config)
    with tracking.stage_run(config, "report") as run:
        runs = pipeline_runs(config) if run.active else []
        points = {r.pipeline_id: (r.metric("evaluate", "energy/pj_per_inference"),
                                  r.metric("evaluate", "crossbar/acc_mean")) for r in runs}
        crossbar = metrics["crossbar"]
        points = {k: p for k, p in points.items() if None not in p}
        points[pid] = (crossbar["energy/pj_per_inference"], crossbar["crossbar/acc_mean"])
        table = costs(metrics, energy)
        run.log_artifact(plot_costs({m: {COSTS[k]: v for k, v in c.items()} for m, c in table.items()},
                                    accuracies(metrics), PLOTS["costs"]))
        run.log_artifact(plot_pruning(layer_fractions(metrics["prune"]), PLOTS["pruning"]))
        run.log_artifact(plot_pareto(points, pid, PLOTS["pareto"]))
        report = markdown(ReportInputs(f"QS4D pipeline report: {config.data.name}", pid, metrics, energy,
                                       [duration(t) for t in config.evaluate.times],
                                       markdown_table(runs[-RUNS_SHOWN:]) if runs else None))
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(report)
        run.log_artifact(OUT)
        for name in EARLIER_PLOTS:
            run.log_artifact(Path(f"plots/{name}.png"), "plots")
        summary = {f"{model}/{key}": value for model, cost in table.items() for key, value in cost.items()}
        run.log_metrics(summary)
        run.log_artifact(stage.write_metrics("report", summary))
    print(f"report: {OUT}; energy per inference " + ", ".join(f"{m} {e / 1e3:.1f} nJ" for m, e in energy.items()))


if __name__ == "__main__":
    stage.run(main)
