"""Stage `prune`: prune the QAT model on a held-out split, recover → its checkpoint and metrics."""
from pipeline import stage
from pipeline.steps import prune

if __name__ == "__main__":
    stage.run(prune.run, "data", "model", "out", "metrics")
