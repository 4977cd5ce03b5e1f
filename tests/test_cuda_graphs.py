"""The captured training pass against the eager one (needs a GPU; CI has none, the GPU machine runs it)."""
import copy

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from pipeline import data
from pipeline.cuda_graphs import GraphedStep, capture
from pipeline.model import S4DClassifier
from pipeline.model.causal_conv import runs_as_toeplitz
from pipeline.quant import quantize
from pipeline.training import fit_classifier

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")


def _twin_models_and_batch():
    """A small 4-bit QAT classifier on the GPU, its copy for capture, and one batch (x, y)."""
    torch.manual_seed(0)
    eager = quantize(S4DClassifier(1, 5, d_model=16, d_state=8, n_layers=2), {"all": 4}).cuda().train()
    x, y = torch.randn(8, 50, 1, device="cuda"), torch.randint(0, 5, (8,), device="cuda")
    return eager, copy.deepcopy(eager), x, y


@pytest.mark.parametrize("compile", [False, True])
def test_replayed_graphs_give_the_eager_step_and_capture_leaves_the_buffers_alone(compile):
    eager, graphed_model, x, y = _twin_models_and_batch()
    forward = capture(graphed_model, "conv", x, compile)
    for name, buffer in graphed_model.named_buffers():  # three warm-up passes, then restored
        assert torch.equal(buffer, dict(eager.named_buffers())[name]), name
    for _ in range(2):
        F.cross_entropy(eager(x), y).backward()
        F.cross_entropy(forward(x), y).backward()
    for (name, a), b in zip(eager.named_parameters(), graphed_model.parameters()):
        assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-5), name  # encoder.bias: ~0 (BatchNorm follows)
    for (name, a), b in zip(eager.named_buffers(), graphed_model.buffers()):
        assert torch.allclose(a.float(), b.float(), rtol=1e-5, atol=1e-7), name


@pytest.mark.parametrize("compile", [False, True])
def test_replayed_step_gives_the_eager_losses_and_clipped_gradients(compile):
    eager, graphed_model, x, y = _twin_models_and_batch()
    step = GraphedStep(graphed_model, "conv", x, y, max_norm=0.05, compile=compile)
    for (name, a), b in zip(eager.state_dict().items(), graphed_model.state_dict().values()):
        assert torch.equal(a, b), name  # warm-up and capture change no parameter and no buffer
    assert all(p.grad is None for p in graphed_model.parameters())
    for _ in range(2):  # new batches through the graph's inputs; the clip is active (the norm is above 0.05)
        x, y = torch.randn_like(x), torch.randint(0, 5, (8,), device="cuda")
        eager.zero_grad(set_to_none=True)
        losses = F.cross_entropy(eager(x), y, reduction="none")
        losses.mean().backward()
        assert torch.nn.utils.clip_grad_norm_(list(eager.parameters()), 0.05) > 0.05
        logits, graphed_losses = step(x, y)
        assert torch.allclose(losses, graphed_losses, rtol=1e-5, atol=1e-6)
        for (name, a), b in zip(eager.named_parameters(), graphed_model.parameters()):
            assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-6), name


class NoHostSync(L.Callback):
    """Raises on any host–GPU synchronisation between the first and the last training step of epoch 2 (the steps
    of a replayed, compiled pass: the host must only queue work)."""

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.current_epoch == 1 and batch_idx == 1:
            torch.cuda.set_sync_debug_mode("error")

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if batch_idx + 1 == trainer.num_training_batches:  # the epoch's metrics are read after this
            torch.cuda.set_sync_debug_mode("default")


def test_training_steps_do_not_wait_for_the_gpu(tiny, tmp_path):
    train = tiny.train.model_copy(update={"accelerator": "gpu", "deterministic": False})
    config = tiny.model_copy(update={"train": train, "pretrain": tiny.pretrain.model_copy(update={"epochs": 2})})
    data.prepare(config, tmp_path / "prepared")
    try:
        fit_classifier(config, tmp_path / "prepared", tmp_path / "run", callbacks=[NoHostSync()])
    finally:
        torch.cuda.set_sync_debug_mode("default")


class _Graphed(torch.nn.Module):
    """A module whose forward is a captured pass of `model` (its parameters registered), as DDP wraps it."""

    def __init__(self, model, forward):
        super().__init__()
        self.model, self.forward_graphs = model, forward

    def forward(self, x):
        return self.forward_graphs(x)


@pytest.mark.parametrize("compile", [False, True])
def test_graphs_under_ddp_give_the_eager_gradients(compile, tmp_path):
    """DDP's all-reduce runs from the gradient hooks outside the graphs; one NCCL process reduces over itself."""
    torch.distributed.init_process_group("nccl", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        eager, graphed_model, x, y = _twin_models_and_batch()
        ddp = torch.nn.parallel.DistributedDataParallel(
            _Graphed(graphed_model, capture(graphed_model, "conv", x, compile)), device_ids=[0])
        for _ in range(2):
            F.cross_entropy(eager(x), y).backward()
            F.cross_entropy(ddp(x), y).backward()
        for (name, a), b in zip(eager.named_parameters(), graphed_model.parameters()):
            assert b.grad is not None and torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-5), name
    finally:
        torch.distributed.destroy_process_group()


class GraphsUsed(L.Callback):
    """Writes, per process (DDP's processes are spawned), whether the training pass was replayed from graphs and
    whether a batch of the training length takes the Toeplitz convolution."""

    def __init__(self, folder):
        self.folder = folder

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.toeplitz = runs_as_toeplitz(torch.zeros(1, 1, batch[0].shape[1], device=module.device))

    def on_train_end(self, trainer, module):
        (self.folder / f"rank{trainer.global_rank}").write_text(f"{module._graphed is not None} {self.toeplitz}")


def test_one_ddp_process_trains_graphed_like_one_plain_process(tiny, tmp_path):
    train = tiny.train.model_copy(update={"accelerator": "gpu", "deterministic": False, "compile": False,
                                          "matmul_precision": "high"})
    config = tiny.model_copy(update={"train": train, "pretrain": tiny.pretrain.model_copy(update={"epochs": 2})})
    data.prepare(config, tmp_path / "prepared")
    plain, plain_metrics = fit_classifier(config, tmp_path / "prepared", tmp_path / "plain")
    ddp = config.model_copy(update={"train": train.model_copy(update={"strategy": "ddp_spawn"})})
    spawned, ddp_metrics = fit_classifier(ddp, tmp_path / "prepared", tmp_path / "ddp",
                                          callbacks=[GraphsUsed(tmp_path)])
    assert (tmp_path / "rank0").read_text() == "True True"  # graphed, Toeplitz under TF32
    assert abs(plain_metrics["test/acc"] - ddp_metrics["test/acc"]) < 0.02
    for (name, a), b in zip(plain.state_dict().items(), spawned.state_dict().values()):
        if a.is_floating_point() and name != "model.encoder.bias":  # no gradient: BatchNorm follows
            assert (b - a).norm() <= 1e-3 * a.norm() + 1e-6, name
