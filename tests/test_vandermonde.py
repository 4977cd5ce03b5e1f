"""The one-pass S4D kernel generation (Triton; under its interpreter on CPUs) against the layer's own expression."""
import pytest
import torch
from conftest import relative_error
from torch import nn

pytest.importorskip("triton")  # Linux x86-64 only (requirements.txt)
import pipeline.model.s4d as s4d  # noqa: E402
import pipeline.model.vandermonde as one_pass  # noqa: E402

ON = "cuda" if torch.cuda.is_available() else "cpu"  # CPUs run the kernels under Triton's interpreter (conftest)


def kernel_and_grads(layer, length, g, one_pass_allowed, monkeypatch):
    monkeypatch.setattr(s4d, "vandermonde", one_pass)
    monkeypatch.setattr(s4d, "runs_in_one_pass", lambda p: one_pass_allowed)
    layer.zero_grad()
    k = layer.kernel(length)
    k.backward(g.to(k.dtype))
    return [k.detach()] + [p.grad.clone() for p in (layer.log_dt, layer.log_A_re, layer.A_im, layer.C)]


# modes below and across a block of modes; lengths inside one block of steps and across blocks
@pytest.mark.parametrize("d_state,length", [(10, 20), (2 * one_pass.MODES + 6, 2 * one_pass.STEPS + 5),
                                            (64, 784)])
def test_one_pass_kernel_and_gradients_are_as_close_to_float64_as_the_expression(d_state, length, monkeypatch):
    """Against the layer's expression in float64, the one-pass kernel and its gradients (through Δ, A and C) are
    within twice the float32 expression's own error."""
    torch.manual_seed(0)
    layer = s4d.S4D(5, d_state).to(ON)
    g = torch.randn(5, length, device=ON)
    exact = kernel_and_grads(layer.double(), length, g, False, monkeypatch)
    expression = kernel_and_grads(layer.float(), length, g, False, monkeypatch)
    fused = kernel_and_grads(layer, length, g, True, monkeypatch)
    for name, a, b, c in zip(("K", "log_dt", "log_A_re", "A_im", "C"), fused, expression, exact):
        assert relative_error(a, c) <= 2 * relative_error(b, c) + 1e-6, name


def test_a_tap_on_the_stored_values_goes_through_the_one_pass_kernel_too(monkeypatch):
    """With Ā perturbed by a tap (the branch that takes log Ā from the stored values), the same kernel."""
    torch.manual_seed(1)
    layer = s4d.S4D(4, 16).to(ON)
    layer.taps.attach("A_bar", nn.Identity())
    g = torch.randn(4, 50, device=ON)
    fused = kernel_and_grads(layer, 50, g, True, monkeypatch)
    for name, a, b in zip(("K", "log_dt", "log_A_re", "A_im", "C"), fused,
                          kernel_and_grads(layer, 50, g, False, monkeypatch)):
        assert relative_error(a, b) <= 1e-5, name


def test_one_pass_kernel_passes_the_custom_op_checks_and_compiles_to_the_same_numbers():
    torch.manual_seed(2)
    p, q, w_re, w_im = -torch.rand(3, 12, device=ON) / 20, torch.rand(3, 12, device=ON), *torch.randn(2, 3, 12,
                                                                                                       device=ON)
    leaves = [x.requires_grad_() for x in (p, q, w_re, w_im)]
    torch.library.opcheck(one_pass._kernel, (*leaves, 40))
    g = torch.randn(3, 40, device=ON)
    eager = torch.autograd.grad(one_pass.vandermonde(*leaves, 40), leaves, g)
    compiled = torch.compile(one_pass.vandermonde, fullgraph=True)
    assert all(torch.equal(a, b) for a, b in zip(torch.autograd.grad(compiled(*leaves, 40), leaves, g), eager))


def test_the_one_pass_kernel_runs_only_for_float32_on_cuda():
    p = torch.zeros(2, 3)
    assert not s4d.runs_in_one_pass(p) and not s4d.runs_in_one_pass(p.double())
    if torch.cuda.is_available():
        assert s4d.runs_in_one_pass(p.cuda()) == (s4d.vandermonde is not None)
