"""Sweep `mixed_precision`: greedy per-component bit descent from the float model → a metrics file (the accepted
path, every round's candidates, the final bits) and a plot. Every candidate is an MLflow run nested under this
stage's run. Run with `dvc repro sweeps/dvc.yaml:mixed_precision`."""
from pipeline import stage
from pipeline.steps import mixed_precision

if __name__ == "__main__":
    stage.run(mixed_precision.run, "data", "float_model", "metrics", "plot")
