"""The pipeline runs recorded in the MLflow store, as rows of key metrics per stage, and a markdown table of them.

    python -m pipeline.runs                       # every pipeline run of the experiment in params.yaml
    python -m pipeline.runs --pipeline-id 3f2a    # the runs whose pipeline_id starts with 3f2a
    python -m pipeline.runs --stage-metrics qat   # every metric of one stage instead of the key metrics
    python -m pipeline.runs --last 5 --columns qat.bits.all,seed
    python -m pipeline.runs --pareto pareto.png   # crossbar accuracy vs energy of every run, Pareto front joined

Columns: the pipeline id, its start, commit, the params that differ between the listed runs, then the key
metrics (the latest finished child run of each stage).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pipeline.config import Config, ConfigError, load
from pipeline.report import table
from pipeline.tracking import mlflow_client, tracking_uri

KEY_METRICS = {  # column → (stage, metric)
    "float acc": ("pretrain", "test/acc"),
    "PTQ acc": ("qat", "ptq/test/acc"),
    "QAT acc": ("qat", "test/acc"),
    "ACE ÷": ("qat", "cost/ace_reduction"),
    "pruned acc": ("prune", "test/acc"),
    "modes pruned": ("prune", "pruned/structured_frac"),
    "finetuned acc": ("finetune", "test/acc"),
    "crossbar acc": ("evaluate", "crossbar/acc_mean"),
    "nJ/inference": ("evaluate", "energy/pj_per_inference"),
}
SCALE = {"nJ/inference": 1e-3}


@dataclass
class PipelineRun:
    """One pipeline run: its parent run's tags and params, and each stage's metrics from its latest finished
    child run."""

    pipeline_id: str
    started: datetime
    git_sha: str
    params: dict[str, str]
    stages: dict[str, dict[str, float]] = field(default_factory=dict)

    def metric(self, stage: str, key: str) -> float | None:
        return self.stages.get(stage, {}).get(key)


def pipeline_runs(config: Config, pipeline_id: str = "") -> list[PipelineRun]:
    """The experiment's pipeline runs (oldest first) whose pipeline_id starts with `pipeline_id`."""
    client = mlflow_client(tracking_uri(config))
    experiment = client.get_experiment_by_name(config.tracking.experiment)
    if experiment is None:
        return []
    def search(role: str):
        return client.search_runs([experiment.experiment_id], f"tags.run_role = '{role}'", max_results=50000,
                                  order_by=["start_time ASC"])

    runs = {}
    for parent in search("pipeline"):
        pid = parent.data.tags["pipeline_id"]
        if pid.startswith(pipeline_id):
            runs[parent.info.run_id] = PipelineRun(
                pid, datetime.fromtimestamp(parent.info.start_time / 1000, UTC),
                parent.data.tags.get("git_sha", ""), parent.data.params)
    for child in search("stage"):  # oldest first: a later finished run of a stage replaces an earlier one
        owner = runs.get(child.data.tags.get("mlflow.parentRunId"))
        if owner is not None and child.info.status == "FINISHED":
            owner.stages[child.data.tags["dvc_stage"]] = child.data.metrics
    return list(runs.values())


def varying_params(runs: list[PipelineRun]) -> list[str]:
    """Params that every run has and whose value differs between them (tracking settings left out)."""
    shared = set.intersection(*(set(r.params) for r in runs)) if runs else set()
    return sorted(k for k in shared if not k.startswith("tracking.") and len({r.params[k] for r in runs}) > 1)


def markdown_table(runs: list[PipelineRun], stage: str | None = None, params: list[str] | None = None) -> str:
    """One row per run: id, start, commit, `params` (default: the varying ones), then the key metrics (or all
    of `stage`'s)."""
    params = varying_params(runs) if params is None else params
    if stage is None:
        metrics = {name: (source, SCALE.get(name, 1.0)) for name, source in KEY_METRICS.items()}
    else:
        names = sorted({k for r in runs for k in r.stages.get(stage, {})})
        metrics = {name: ((stage, name), 1.0) for name in names}

    def scaled(run: PipelineRun, source: tuple[str, str], scale: float) -> float | None:
        value = run.metric(*source)
        return None if value is None else value * scale

    rows = [[run.pipeline_id, run.started.strftime("%Y-%m-%d %H:%M"), run.git_sha[:8],
             *(run.params.get(p) for p in params), *(scaled(run, *m) for m in metrics.values())] for run in runs]
    return table(["pipeline", "started (UTC)", "commit", *params, *metrics], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="List the pipeline runs of the MLflow store as a markdown table")
    parser.add_argument("--params", default="params.yaml", help="params file naming the store and experiment")
    parser.add_argument("--pipeline-id", default="", help="only runs whose pipeline_id starts with this")
    parser.add_argument("--stage-metrics", metavar="STAGE", help="every metric of this stage, not the key metrics")
    parser.add_argument("--columns", help="comma-separated params to show (default: those that differ)")
    parser.add_argument("--last", type=int, default=0, help="only the N most recent runs")
    parser.add_argument("--pareto", type=Path, metavar="PNG", help="also plot crossbar accuracy vs energy per run")
    args = parser.parse_args(argv)
    try:
        config = load(args.params)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    runs = pipeline_runs(config, args.pipeline_id)
    runs = runs[-args.last:] if args.last > 0 else runs
    if not runs:
        print(f"no pipeline runs{f' with id {args.pipeline_id}*' if args.pipeline_id else ''} in experiment "
              f"'{config.tracking.experiment}' of {tracking_uri(config)}", file=sys.stderr)
        return 1
    print(markdown_table(runs, args.stage_metrics, args.columns.split(",") if args.columns else None))
    if args.pareto:
        from pipeline.plots import plot_pareto

        points = {r.pipeline_id: (r.metric("evaluate", "energy/pj_per_inference"),
                                  r.metric("evaluate", "crossbar/acc_mean")) for r in runs}
        points = {k: p for k, p in points.items() if None not in p}
        print(f"pareto plot of {len(points)} runs: {plot_pareto(points, runs[-1].pipeline_id, args.pareto)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
