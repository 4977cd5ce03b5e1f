"""Workflows: the work of each pipeline stage, built on training and the mechanisms below it (one module per
stage; the stage scripts parse their arguments and call one function here)."""
