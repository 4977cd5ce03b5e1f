"""The captured training pass against the eager one (needs a GPU; CI has none, the GPU machine runs it)."""
import copy

import pytest
import torch
import torch.nn.functional as F

from pipeline.cuda_graphs import capture
from pipeline.model import S4DClassifier
from pipeline.quant import quantize

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")


@pytest.mark.parametrize("compile", [False, True])
def test_replayed_graphs_give_the_eager_step_and_capture_leaves_the_buffers_alone(compile):
    torch.manual_seed(0)
    eager = quantize(S4DClassifier(1, 5, d_model=16, d_state=8, n_layers=2), {"all": 4}).cuda().train()
    graphed_model = copy.deepcopy(eager)
    x, y = torch.randn(8, 50, 1, device="cuda"), torch.randint(0, 5, (8,), device="cuda")
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
