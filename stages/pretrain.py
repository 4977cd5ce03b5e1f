"""Stage `pretrain`: float training of the S4D classifier → its checkpoint and metrics."""
from pipeline import stage
from pipeline.steps import pretrain

if __name__ == "__main__":
    stage.run(pretrain.run, "data", "out", "metrics")
