"""Stage `evaluate`: the fine-tuned model on simulated crossbar chips (per device, over time) beside its software
accuracy; energy per inference vs digital baselines; the crossbar programs (one folder per device), metrics and
two plots."""
from pipeline import stage
from pipeline.steps import evaluate

if __name__ == "__main__":
    stage.run(evaluate.run, "data", "model", "programs_dir", "metrics", "accuracy_plot", "energy_plot")
