"""QS4D pipeline: S4D models from float training to quantized, pruned, analog-deployed inference."""
