import math
import time
from pathlib import Path

import lightning as L
import pytest
import torch

from pipeline import data
from pipeline.data import read_meta
from pipeline.data.datamodule import load_split
from pipeline.stage import export_checkpoint
from pipeline.training import ClassifierModule, MemoryLogger, build_module, fit, fit_classifier, resume_point
from pipeline.training.module import TrainingTotals, warmup_cosine


def test_tiny_fit_lowers_the_loss_and_keeps_the_best_checkpoint(tiny, tmp_path):
    data.prepare(tiny, tmp_path / "prepared")
    logged = MemoryLogger()
    module, metrics = fit_classifier(tiny, tmp_path / "prepared", tmp_path / "work", logger=logged)
    history = [logged.epochs[e] for e in range(tiny.pretrain.epochs)]
    assert set(logged.epochs[tiny.pretrain.epochs]) == {"test/acc", "test/loss"}  # the test after training
    assert {"train/loss", "train/acc", "val/loss", "val/acc", "train/lr", "train/samples_per_s"} <= set(history[0])
    assert history[-1]["train/lr"] < history[0]["train/lr"]  # decayed (one warm-up epoch, then a cosine)
    assert metrics["train/epochs"] == tiny.pretrain.epochs
    assert history[-1]["train/loss"] < history[0]["train/loss"]
    assert metrics["val/acc"] == max(h["val/acc"] for h in history)
    assert metrics["test/acc"] > 0.3  # ten classes: chance is 0.1
    x, y = load_split(tmp_path / "prepared", "test").tensors
    with torch.no_grad():
        plain_accuracy = (module.eval()(x).argmax(-1) == y).float().mean().item()
    assert abs(metrics["test/acc"] - plain_accuracy) < 1e-6  # plain accuracy, not a class-balanced one
    assert metrics["params"] == sum(p.numel() for p in module.parameters())
    assert (tmp_path / "work" / "best.ckpt").is_file() and (tmp_path / "work" / "last.ckpt").is_file()
    reloaded = ClassifierModule.load_from_checkpoint(tmp_path / "work" / "best.ckpt")
    x = torch.randn(2, 64, 1)
    assert torch.equal(reloaded.eval()(x), module.eval()(x))


class SlowValidation(L.Callback):
    """Sleeps for a second after each validation; records each epoch's time from its start to its validation."""

    def __init__(self):
        self.spans = []

    def on_train_epoch_start(self, trainer, module):
        self.start = time.perf_counter()

    def on_validation_epoch_start(self, trainer, module):
        self.spans.append(time.perf_counter() - self.start)

    def on_validation_epoch_end(self, trainer, module):
        time.sleep(1.0)


def test_epoch_time_and_throughput_count_the_training_steps_not_the_validation(tiny, tmp_path):
    config = tiny.model_copy(update={"pretrain": tiny.pretrain.model_copy(update={"epochs": 2})})
    data.prepare(config, tmp_path / "prepared")
    logged, slow = MemoryLogger(), SlowValidation()
    fit_classifier(config, tmp_path / "prepared", tmp_path / "work", logger=logged, callbacks=[slow])
    samples = read_meta(tmp_path / "prepared")["splits"]["train"] // 64 * 64
    for epoch, span in enumerate(slow.spans):
        seconds, rate = logged.epochs[epoch]["train/epoch_seconds"], logged.epochs[epoch]["train/samples_per_s"]
        assert seconds == pytest.approx(span, abs=0.25)  # not the second of validation after it
        assert rate * seconds == pytest.approx(samples)


class TrainingModes(L.Callback):
    """Whether every module of the trained module was in training mode at each training step."""

    def __init__(self):
        self.seen = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.seen.append(all(m.training for m in module.modules()))


def test_a_module_left_in_evaluation_mode_still_trains_in_training_mode(tiny, tmp_path):
    data.prepare(tiny, tmp_path / "prepared")
    module = build_module(tiny, read_meta(tmp_path / "prepared"), tiny.pretrain).eval()  # as after an evaluation
    modes = TrainingModes()
    fit(module, tiny, tiny.pretrain.model_copy(update={"epochs": 1}), tmp_path / "prepared", tmp_path / "work",
        callbacks=[modes])
    assert modes.seen and all(modes.seen)


def test_ssm_parameters_get_their_own_group(tiny):
    module = ClassifierModule(1, 10, tiny.model.model_dump(), tiny.pretrain.model_dump())

    class FakeTrainer:
        estimated_stepping_batches, max_epochs = 10, 2

    module.trainer = FakeTrainer()  # only what configure_optimizers reads
    ssm_group, rest = module.configure_optimizers()["optimizer"].param_groups
    assert {id(p) for p in ssm_group["params"]} == {id(p) for p in module.model.ssm_parameters()}
    assert ssm_group["weight_decay"] == 0 and ssm_group["initial_lr"] <= 1e-3
    assert rest["initial_lr"] == tiny.pretrain.lr and rest["weight_decay"] == tiny.pretrain.weight_decay


class PoisonWeights(L.Callback):
    """Sets the decoder's weights to NaN at the start of epoch `epoch` (0-based), as a diverging run would."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, module):
        if trainer.current_epoch == self.epoch:
            with torch.no_grad():
                module.model.decoder.weight.fill_(float("nan"))


def test_a_diverged_epoch_stops_training_before_it_is_checkpointed(tiny, tmp_path):
    data.prepare(tiny, tmp_path / "prepared")
    with pytest.raises(FloatingPointError, match="in epoch 2: the run diverged; lower the stage's lr"):
        fit_classifier(tiny, tmp_path / "prepared", tmp_path / "work", callbacks=[PoisonWeights(epoch=1)])
    last = torch.load(tmp_path / "work" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == 0 and torch.isfinite(last["state_dict"]["model.decoder.weight"]).all()


class CrashAfter(L.Callback):
    """Stops training with an error at the end of one epoch, as a killed job would."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, module):
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("simulated crash")


class BatchLog(L.Callback):
    """Writes (rank, processes, batch length, float32 matmul precision) of every training batch to a file per
    rank."""

    def __init__(self, folder: Path):
        self.folder = folder

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        with open(self.folder / f"rank{trainer.global_rank}.txt", "a") as log:
            log.write(f"{trainer.global_rank} {trainer.world_size} {len(batch[1])} "
                      f"{torch.get_float32_matmul_precision()}\n")


def _weights(module):
    return {k: v for k, v in module.state_dict().items() if v.is_floating_point()}


def test_same_params_give_identical_results_and_an_interrupted_run_resumes_to_them(tiny, tmp_path):
    config = tiny.model_copy(update={"pretrain": tiny.pretrain.model_copy(update={"epochs": 3})})
    data.prepare(config, tmp_path / "prepared")
    runs = {name: fit_classifier(config, tmp_path / "prepared", tmp_path / name) for name in ("a", "b")}
    timing = {"train/seconds", "train/samples_per_s"}
    same = [{k: v for k, v in metrics.items() if k not in timing} for _, metrics in runs.values()]
    assert same[0] == same[1]
    assert all(torch.equal(runs["a"][0].state_dict()[k], w) for k, w in _weights(runs["b"][0]).items())
    exported = [export_checkpoint(tmp_path / name / "best.ckpt", tmp_path / f"out_{name}" / "model.ckpt")
                for name in ("a", "b")]
    assert exported[0].read_bytes() == exported[1].read_bytes()  # no wall times: the same results hash the same
    reloaded = ClassifierModule.load_from_checkpoint(exported[0], map_location="cpu")
    assert all(torch.equal(reloaded.state_dict()[k], w) for k, w in _weights(runs["a"][0]).items())

    with pytest.raises(RuntimeError, match="simulated crash"):
        fit_classifier(config, tmp_path / "prepared", tmp_path / "c", callbacks=[CrashAfter(1)])
    logged = MemoryLogger()
    resumed, metrics = fit_classifier(config, tmp_path / "prepared", tmp_path / "c", logger=logged)
    assert sorted(logged.epochs) == [1, 2, 3]  # epochs 1, 2 (epoch 0's checkpoint was the last before the crash), test
    assert {k: v for k, v in metrics.items() if k not in timing} == same[0]
    assert all(torch.equal(runs["a"][0].state_dict()[k], w) for k, w in _weights(resumed).items())


def test_only_an_unfinished_run_of_the_same_params_is_resumed(tmp_path):
    workdir = tmp_path / "work"
    assert resume_point(workdir, "key1", epochs=3) is None
    torch.save({"epoch": 1}, workdir / "last.ckpt")  # Lightning's count of the epoch it was saved in
    assert resume_point(workdir, "key1", epochs=3) == workdir / "last.ckpt"  # interrupted after 2 of 3 epochs
    assert resume_point(workdir, "key1", epochs=2) is None  # finished: trained again (dvc repro -f)
    assert not (workdir / "last.ckpt").exists()
    torch.save({"epoch": 0}, workdir / "last.ckpt")
    assert resume_point(workdir, "key2", epochs=3) is None and not (workdir / "last.ckpt").exists()
    assert (workdir / "run_key").read_text() == "key2"


def test_two_gloo_processes_match_one_process(tiny, tmp_path):
    # matmul precision "high" (no effect on CPU products): set while training, here and in the spawned processes
    config = tiny.model_copy(update={"train": tiny.train.model_copy(update={"matmul_precision": "high"})})
    data.prepare(config, tmp_path / "prepared")
    single, single_metrics = fit_classifier(config, tmp_path / "prepared", tmp_path / "one")
    assert torch.get_float32_matmul_precision() == "highest"  # this process's own again after training
    ddp = config.model_copy(update={"train": config.train.model_copy(update={"devices": 2, "strategy": "ddp_spawn"})})
    (tmp_path / "log").mkdir()
    double, double_metrics = fit_classifier(ddp, tmp_path / "prepared", tmp_path / "two",
                                            callbacks=[BatchLog(tmp_path / "log")])
    lines = {rank: (tmp_path / "log" / f"rank{rank}.txt").read_text().split("\n")[:-1] for rank in (0, 1)}
    assert all(line == f"{rank} 2 {config.train.batch_size // 2} high" for rank in (0, 1) for line in lines[rank])
    batches = len(load_split(tmp_path / "prepared", "train")) // 64
    assert len(lines[0]) == len(lines[1]) == config.pretrain.epochs * batches
    # BatchNorm sees each process's half batch (torch syncs its statistics on GPUs only), so CPU runs agree
    # closely but not exactly, and how far they drift apart in 3 epochs depends on the CPU code path's rounding (up
    # to 6.8% of a weight's norm under ATEN_CPU_CAPABILITY=default); the bias before BatchNorm has no gradient and
    # is left out.
    for split in ("val/acc", "test/acc"):
        assert abs(single_metrics[split] - double_metrics[split]) < 0.03
    for name, weight in _weights(single).items():
        if name.endswith("norm.running_mean") or name == "model.encoder.bias":
            continue
        assert (double.state_dict()[name] - weight).norm() <= 0.1 * weight.norm(), name


def test_last_checkpoint_is_rewritten_every_epoch_even_without_improvement(tiny, tmp_path):
    frozen = tiny.pretrain.model_copy(update={"epochs": 3, "lr": 1e-9, "ssm_lr": 1e-9, "warmup_epochs": 0})
    config = tiny.model_copy(update={"pretrain": frozen})
    data.prepare(config, tmp_path / "prepared")
    _, metrics = fit_classifier(config, tmp_path / "prepared", tmp_path / "work")
    last = torch.load(tmp_path / "work" / "last.ckpt", map_location="cpu", weights_only=False)
    best = torch.load(tmp_path / "work" / "best.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == 2 and best["epoch"] == 0  # validation accuracy never improved after epoch 0
    assert metrics["train/epochs"] == 3


def test_training_on_a_terminal_prints_no_banners_tips_or_summary(tiny, tmp_path, capfd, monkeypatch):
    import pipeline.training.trainer

    monkeypatch.setattr(pipeline.training.trainer, "show_progress", lambda: True)  # as on an interactive terminal
    one_epoch = tiny.model_copy(update={"pretrain": tiny.pretrain.model_copy(update={"epochs": 1})})
    data.prepare(one_epoch, tmp_path / "prepared")
    capfd.readouterr()
    fit_classifier(one_epoch, tmp_path / "prepared", tmp_path / "work")
    printed = "".join(capfd.readouterr())
    assert not any(noise in printed for noise in ("GPU available", "TPU available", "Tip", "Total params", "| Name"))


@pytest.mark.parametrize("warmup,total", [(0, 50), (1, 50), (2, 7), (10, 100)])
def test_learning_rate_warms_up_linearly_then_decays_as_a_cosine(warmup, total):
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([parameter], lr=0.5)
    scheduler = warmup_cosine(optimizer, warmup, total)
    for step in range(total):
        if step < warmup:
            factor = (step + 1) / warmup
        else:
            factor = 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))
        assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5 * factor, rel=1e-12, abs=1e-15), step
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-15)  # after the last step


def test_training_totals_are_torchmetrics_mean_loss_and_micro_accuracy_to_the_bit():
    from torchmetrics import MeanMetric
    from torchmetrics.classification import MulticlassAccuracy

    generator = torch.Generator().manual_seed(0)
    totals = TrainingTotals(torch.device("cpu"))
    accuracy, mean_loss = MulticlassAccuracy(7, average="micro", validate_args=False), MeanMetric()
    for size in (64, 64, 37):
        logits, y = torch.randn(size, 7, generator=generator), torch.randint(0, 7, (size,), generator=generator)
        losses = torch.nn.functional.cross_entropy(logits, y, reduction="none")
        totals.add(logits, losses, y)
        accuracy.update(logits, y)
        mean_loss.update(losses)
    means = totals.means()
    assert totals.samples == 165 and 0 < float(means["acc"]) < 1
    assert torch.equal(means["acc"], accuracy.compute()) and torch.equal(means["loss"], mean_loss.compute())
