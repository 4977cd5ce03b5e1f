import pytest
import torch

from pipeline import data
from pipeline.data.datamodule import load_split
from pipeline.training import ClassifierModule, fit_classifier


def test_tiny_fit_lowers_the_loss_and_keeps_the_best_checkpoint(tiny, tmp_path):
    data.prepare(tiny, tmp_path / "prepared")
    history = []
    module, metrics = fit_classifier(tiny, tmp_path / "prepared", tmp_path / "work",
                                     sink=lambda m, epoch: history.append(m))
    assert len(history) == tiny.pretrain.epochs
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


def test_ssm_parameters_get_their_own_group(tiny):
    module = ClassifierModule(1, 10, tiny.model.model_dump(), tiny.pretrain.model_dump())

    class FakeTrainer:
        estimated_stepping_batches, max_epochs = 10, 2

    module.trainer = FakeTrainer()  # only what configure_optimizers reads
    ssm_group, rest = module.configure_optimizers()["optimizer"].param_groups
    assert {id(p) for p in ssm_group["params"]} == {id(p) for p in module.model.ssm_parameters()}
    assert ssm_group["weight_decay"] == 0 and ssm_group["initial_lr"] <= 1e-3
    assert rest["initial_lr"] == tiny.pretrain.lr and rest["weight_decay"] == tiny.pretrain.weight_decay


@pytest.mark.filterwarnings("ignore:You are trying to `self.log")  # a step called outside a Trainer
def test_a_non_finite_loss_stops_training_with_a_clear_message(tiny):
    module = ClassifierModule(1, 10, tiny.model.model_dump(), tiny.pretrain.model_dump())
    x, y = torch.randn(4, 64, 1), torch.tensor([0, 1, 2, 3])
    assert torch.isfinite(module.training_step((x, y), 0))
    x[0, 5, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="diverged; lower the stage's lr"):
        module.training_step((x, y), 7)
