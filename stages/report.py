"""Stage `report`: the run's report (markdown) with plots of costs (float → PTQ → QAT → pruned), pruning per layer
and accuracy vs energy of the run's models, beside the plots of the earlier stages; a summary metrics file."""
from pipeline import stage
from pipeline.steps import report

if __name__ == "__main__":
    stage.run(report.run, "data", "float_model", "qat_model", "pruned_model", "metrics_dir", "out", "costs_plot",
              "pruning_plot", "pareto_plot", "metrics", "headline_metrics")
