"""Stage `finetune`: noise-aware fine-tuning of the pruned model → its checkpoint and metrics, and the robustness
curve of the float, QAT and fine-tuned models → a metrics file and a plot."""
from pipeline import stage
from pipeline.steps import finetune

if __name__ == "__main__":
    stage.run(finetune.run, "data", "model", "float_model", "qat_model", "out", "metrics", "robustness_metrics", "plot")
