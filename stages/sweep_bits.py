"""Stage `sweep_bits`: PTQ and QAT test accuracy per component and bit width → a metrics file and a plot."""
from pipeline import stage
from pipeline.steps import sweep_bits

if __name__ == "__main__":
    stage.run(sweep_bits.run, "data", "float_model", "metrics", "plot")
