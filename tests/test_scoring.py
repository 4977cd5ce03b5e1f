import pytest
import torch
from torch import nn

from pipeline.scoring import copy_accuracies, scores


class Copies(nn.Module):
    """Three models run as one on a chip-major repeated batch: copy 0 is always right, copy 1 right on even
    labels only, copy 2 always wrong. The label is stored in the input."""

    def __init__(self):
        super().__init__()
        self.decoder = nn.Linear(1, 4)

    def forward(self, x, mode="recurrent"):
        label = x[:, 0, 0].long()
        copy = torch.arange(len(x)) // (len(x) // 3)
        predicted = torch.where(copy == 0, label, torch.where((copy == 1) & (label % 2 == 0), label, (label + 1) % 4))
        return nn.functional.one_hot(predicted, 4).float()


def test_each_copy_gets_its_own_accuracy_over_several_batches():
    y = torch.arange(10) % 4
    x = y.float().view(-1, 1, 1).expand(-1, 5, 1)
    accuracies = copy_accuracies(Copies(), x, y, copies=3, batch_size=6)  # 2 sequences × 3 copies per batch
    even = float((y % 2 == 0).float().mean())
    assert accuracies.tolist() == pytest.approx([1.0, even, 0.0])


def test_a_single_copy_still_gives_one_accuracy_per_copy():
    y = torch.arange(10) % 4
    x = y.float().view(-1, 1, 1).expand(-1, 5, 1)
    model = Linear()
    single = copy_accuracies(model, x.transpose(1, 2).contiguous(), y, copies=1)
    assert single.shape == (1,)  # a list of one chip's accuracy, as the evaluation's statistics expect


class Linear(nn.Module):
    """A linear classifier called as the S4D classifier is, model(x, mode)."""

    def __init__(self):
        super().__init__()
        self.decoder = nn.Linear(5, 4)

    def forward(self, x, mode="conv"):
        return self.decoder(x.flatten(1))


def test_scores_match_a_direct_computation():
    torch.manual_seed(0)
    model, x, y = Linear(), torch.randn(70, 5, 1), torch.randint(0, 4, (70,))
    got = scores(model, x, y, "conv", batch=16)  # five batches, the last one short
    with torch.no_grad():
        logits = model(x)
    assert got["accuracy"] == pytest.approx(float((logits.argmax(-1) == y).float().mean()))
    assert got["loss"] == pytest.approx(float(nn.functional.cross_entropy(logits.double(), y)))


def test_scores_leave_each_module_in_the_mode_it_had():
    model = Linear()
    model.decoder.eval()  # the top module training, a submodule not
    scores(model, torch.randn(6, 5, 1), torch.randint(0, 4, (6,)), "conv")
    assert model.training and not model.decoder.training
