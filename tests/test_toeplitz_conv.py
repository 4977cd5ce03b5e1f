"""The Toeplitz convolution (Triton; under its interpreter on CPUs) against the FFT convolution in float64."""
import pytest
import torch
from conftest import relative_error

pytest.importorskip("triton")  # Linux x86-64 only (requirements.txt)
import pipeline.model.causal_conv as dispatch  # noqa: E402
import pipeline.model.toeplitz_conv as toeplitz  # noqa: E402
from pipeline.model.fft_conv import fft_conv  # noqa: E402

ON = "cuda" if torch.cuda.is_available() else "cpu"  # CPUs run the kernels under Triton's interpreter (conftest)


def convolution_and_grads(conv, u, k, g):
    u, k = u.detach().requires_grad_(), k.detach().requires_grad_()
    y = conv(u, k)
    return (y, *torch.autograd.grad(y, (u, k), g))


def reference(u, k, g):
    return convolution_and_grads(fft_conv, u.double(), k.double(), g.double())


# batches below, at and above a block of rows; lengths inside one block of steps, across blocks and not a multiple
@pytest.mark.parametrize("batch,length", [(3, 20), (toeplitz.ROWS, 2 * toeplitz.STEPS), (toeplitz.ROWS + 1, 70),
                                          (2, toeplitz.LAG_STEPS + 9)])
def test_toeplitz_conv_and_its_gradients_match_the_fft_convolution(batch, length):
    torch.manual_seed(0)
    u, k, g = (torch.randn(shape, device=ON) for shape in ((batch, 3, length), (3, length), (batch, 3, length)))
    got = convolution_and_grads(lambda a, b: toeplitz.toeplitz_conv(a, b, "ieee"), u, k, g)
    for name, a, b in zip(("y", "du", "dk"), got, reference(u, k, g)):
        assert relative_error(a, b) <= 1e-6, name


def test_toeplitz_conv_passes_the_custom_op_checks_and_compiles_to_the_same_numbers():
    torch.manual_seed(1)
    u, k, g = (torch.randn(shape, device=ON) for shape in ((5, 2, 40), (2, 40), (5, 2, 40)))
    for transpose in (True, False):  # fake shapes and strides, autograd; with u's transposed copy or without it
        torch.library.opcheck(toeplitz._conv, (u, k.requires_grad_(), False, "ieee", transpose))
    y, transposed = toeplitz._conv(u, k, False, "ieee", True)
    assert torch.equal(transposed, u.permute(1, 2, 0)) and torch.equal(y, toeplitz._conv(u, k, False, "ieee", False)[0])
    eager = convolution_and_grads(lambda a, b: toeplitz.toeplitz_conv(a, b, "ieee"), u, k, g)
    compiled = torch.compile(lambda a, b: toeplitz.toeplitz_conv(a, b, "ieee"), fullgraph=True)
    for a, b in zip(convolution_and_grads(compiled, u, k, g), eager):
        assert torch.equal(a, b)


@pytest.mark.parametrize("transpose", [True, False])
@pytest.mark.parametrize("wanted", ["u", "k", "both"])
def test_gradients_of_either_input_alone_with_or_without_the_transposed_copy(transpose, wanted):
    """The op's backward pass when only u or only k needs a gradient (a frozen kernel, a fixed input), whether the
    forward pass wrote u's (H, L, B) copy or not; the copy itself is no result: it carries no gradient."""
    torch.manual_seed(3)
    u, k = torch.randn(3, 2, 20, device=ON), torch.randn(2, 20, device=ON)
    leaves = [x.requires_grad_() for name, x in (("u", u), ("k", k)) if wanted in (name, "both")]
    y, copy = toeplitz._conv(u, k, False, "ieee", transpose)
    assert not copy.requires_grad
    g = torch.randn_like(y)
    doubles = [x.detach().double().requires_grad_(x.requires_grad) for x in (u, k)]
    expected = torch.autograd.grad(fft_conv(*doubles), [x for x in doubles if x.requires_grad], g.double())
    for got, want in zip(torch.autograd.grad(y, leaves, g), expected, strict=True):
        assert relative_error(got, want) <= 1e-6


def test_toeplitz_kernels_run_on_cuda_float32_under_tf32_only(monkeypatch):
    monkeypatch.setattr(dispatch, "toeplitz_conv", toeplitz)  # as loaded where there is a CUDA device
    monkeypatch.setattr(torch, "get_float32_matmul_precision", lambda: "high")
    assert not dispatch.runs_as_toeplitz(torch.randn(2, 3, 16))  # a CPU tensor
    meta = torch.empty(2, 3, 16, device="meta")
    cuda_like = type("CudaLike", (), {"is_cuda": True, "dtype": torch.float32, "shape": meta.shape,
                                      "numel": lambda self: 2**31 - 1})()
    assert dispatch.runs_as_toeplitz(cuda_like)
    cuda_like.numel = lambda: 2**31  # past 32-bit indexing
    assert not dispatch.runs_as_toeplitz(cuda_like)
    del cuda_like.numel
    cuda_like.shape = (2, 3, toeplitz.MAX_LENGTH + 1)
    assert not dispatch.runs_as_toeplitz(cuda_like)
    cuda_like.shape, cuda_like.dtype = meta.shape, torch.float64
    assert not dispatch.runs_as_toeplitz(cuda_like)
    cuda_like.dtype = torch.float32
    monkeypatch.setattr(dispatch, "toeplitz_conv", None)  # Triton not installed
    assert not dispatch.runs_as_toeplitz(cuda_like)
    monkeypatch.setattr(dispatch, "toeplitz_conv", toeplitz)
    monkeypatch.setattr(torch, "get_float32_matmul_precision", lambda: "highest")
    assert not dispatch.runs_as_toeplitz(cuda_like)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="tensor cores are the GPU's")
def test_on_a_gpu_tf32_products_stay_within_tf32_rounding_of_the_fft_convolution():
    torch.manual_seed(2)
    length = 784
    u = torch.randn(64, 16, length, device="cuda")
    k = torch.randn(16, length, device="cuda") * torch.exp(-torch.arange(length, device="cuda") / 200)
    g = torch.randn_like(u)
    previous = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("high")
        assert dispatch.runs_as_toeplitz(u)
        got = convolution_and_grads(dispatch.causal_conv, u, k, g)
        torch.set_float32_matmul_precision("highest")
        assert not dispatch.runs_as_toeplitz(u)
    finally:
        torch.set_float32_matmul_precision(previous)
    for name, a, b in zip(("y", "du", "dk"), got, reference(u, k, g)):
        assert relative_error(a, b) <= 2e-3, name  # TF32: a 10-bit mantissa, unit roundoff 2⁻¹¹ ≈ 4.9e-4
