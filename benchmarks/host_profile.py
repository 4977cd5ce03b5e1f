"""Host (Python) time of one training epoch by function: cProfile over epoch 2 of a preset's float pretraining
(epoch 1 holds the capture and compile), printed by own time and by cumulative time.

    python benchmarks/host_profile.py --preset presets/smnist.yaml --source .device/mnist --rows 28

On a GPU the replayed step queues its work and returns; host time above the step's GPU time, or a function that
waits on the GPU (a large own time in a call that should be cheap), is what holds the loop back.
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
from pathlib import Path

import lightning as L
from bench_config import load_preset

from pipeline import data
from pipeline.training import fit_classifier


class ProfileSecondEpoch(L.Callback):
    def __init__(self, rows: int):
        self.profile, self.rows = cProfile.Profile(), rows

    def on_train_epoch_start(self, trainer, module):
        if trainer.current_epoch == 1:
            self.profile.enable()

    def on_validation_epoch_start(self, trainer, module):
        if trainer.current_epoch == 1:
            self.profile.disable()
            for key in ("tottime", "cumulative"):
                pstats.Stats(self.profile).sort_stats(key).print_stats(self.rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="presets/smnist.yaml")
    parser.add_argument("--source", help="override data.source (e.g. a copy of the MNIST IDX files)")
    parser.add_argument("--rows", type=int, default=28)
    args = parser.parse_args()
    config = load_preset(args.preset, 2, args.source)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data.prepare(config, tmp / "prepared")
        fit_classifier(config, tmp / "prepared", tmp / "float", callbacks=[ProfileSecondEpoch(args.rows)])


if __name__ == "__main__":
    main()
