"""QS4D's comparison: the structured fraction prunable from the float and from the QAT model at the same
criterion (no recovery) → a metrics file. Run with `dvc repro sweeps/dvc.yaml:prune_compare`."""
from pipeline import stage
from pipeline.steps import prune_compare

if __name__ == "__main__":
    stage.run(prune_compare.run, "data", "float_model", "qat_model", "metrics")
