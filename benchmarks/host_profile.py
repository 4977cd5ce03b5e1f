"""Where one training epoch's time goes: cProfile over epoch 2 of a preset's float pretraining (epoch 1 holds the
capture and compile), printed by own time and by cumulative time; with `--gpu`, torch's profiler over 100 steps of
epoch 2 instead: the GPU kernels by total time (per step: divide by 100), the host's ops by own time, and the wall
time per step. With `--qat-bits`, the training is QAT at those bits from a fresh model (the rate does not depend
on the weights).

    python benchmarks/host_profile.py --preset presets/smnist.yaml --source .device/mnist --rows 28 [--gpu] \
        [--qat-bits all=7]

On a GPU the replayed step queues its work and returns; host time above the step's GPU time, or a function that
waits on the GPU (a large own time in a call that should be cheap), is what holds the loop back. GPU time per step
above `step_profile.py`'s graphed step is work the training loop adds (metrics, copies, optimizer groups).
"""
from __future__ import annotations

import argparse
import collections
import cProfile
import pstats
import time

import lightning as L
import torch
from bench_config import load_preset, prepared_data
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from pipeline.config import parse_bits
from pipeline.data import read_meta
from pipeline.steps.qat import quantization
from pipeline.training import build_module, fit, fit_classifier

GPU_STEPS = (200, 300)  # the profiled batches of epoch 2


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


class ProfileGpuSteps(L.Callback):
    def __init__(self, rows: int):
        self.rows, self.profile = rows, profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.current_epoch == 1 and batch_idx == GPU_STEPS[0]:
            torch.cuda.synchronize()
            self.profile.start()
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.current_epoch == 1 and batch_idx + 1 == GPU_STEPS[1]:
            torch.cuda.synchronize()
            steps, seconds = GPU_STEPS[1] - GPU_STEPS[0], time.perf_counter() - self.start
            self.profile.stop()
            for key in ("self_device_time_total", "self_cpu_time_total"):
                print(self.profile.key_averages().table(sort_by=key, row_limit=self.rows))
            kernels = sorted((e for e in self.profile.events()
                              if e.device_type == DeviceType.CUDA and not e.is_user_annotation),
                             key=lambda e: e.time_range.start)
            busy = sum(e.time_range.elapsed_us() for e in kernels) / steps / 1e3
            print(f"{steps} steps: {seconds / steps * 1e3:.3f} ms per step (profiled), {busy:.3f} ms of GPU time "
                  "per step; GPU idle before these kernels (ms per step):")
            idle = collections.Counter()
            for before, after in zip(kernels, kernels[1:]):
                idle[after.name[:90]] += max(0, after.time_range.start - before.time_range.end) / steps / 1e3
            for name, ms in idle.most_common(self.rows):
                print(f"  {ms:8.3f}  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="presets/smnist.yaml")
    parser.add_argument("--source", help="override data.source (e.g. a copy of the MNIST IDX files)")
    parser.add_argument("--rows", type=int, default=28)
    parser.add_argument("--gpu", action="store_true", help="profile the GPU's kernels instead of the host")
    parser.add_argument("--qat-bits", help="e.g. all=7: profile QAT at these bits instead of float training")
    args = parser.parse_args()
    if args.gpu and not torch.cuda.is_available():
        parser.error("--gpu profiles CUDA kernels; this machine has no CUDA GPU (leave it out for the host profile)")
    config = load_preset(args.preset, 2, args.source)
    probe = ProfileGpuSteps(args.rows) if args.gpu else ProfileSecondEpoch(args.rows)
    with prepared_data(config) as tmp:
        if not args.qat_bits:
            fit_classifier(config, tmp / "prepared", tmp / "float", callbacks=[probe])
            return
        qat = config.qat.model_copy(update={"bits": parse_bits(args.qat_bits.split(",")), "epochs": 2})
        module = build_module(config, read_meta(tmp / "prepared"), qat, quantization(qat))
        fit(module, config, qat, tmp / "prepared", tmp / "qat", callbacks=[probe])


if __name__ == "__main__":
    main()
