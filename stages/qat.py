"""Stage `qat`: PTQ baseline, then quantization-aware training from the float model → its checkpoint, metrics."""
from pipeline import stage
from pipeline.steps import qat

if __name__ == "__main__":
    stage.run(qat.run, "data", "float_model", "out", "metrics")
