"""The dense Toeplitz convolution of short sequences on CPUs against a direct causal convolution, and the dispatch
between the forms."""
import pytest
import torch
from conftest import direct_causal_conv, relative_error

import pipeline.model.causal_conv as dispatch
from pipeline.model.dense_conv import MAX_LENGTH, dense_conv, toeplitz_matrices
from pipeline.model.fft_conv import fft_conv


def test_toeplitz_matrices_hold_the_kernel_on_and_above_the_diagonal_and_zeros_below():
    k = torch.arange(1.0, 9.0).view(2, 4)
    matrices = toeplitz_matrices(k)
    for h in range(2):
        for s in range(4):
            for t in range(4):
                assert matrices[h, s, t] == (k[h, t - s] if t >= s else 0)


@pytest.mark.parametrize("batch,channels,length", [(1, 1, 1), (3, 4, 7), (5, 2, 40), (2, 3, MAX_LENGTH)])
def test_dense_conv_and_its_gradients_match_a_direct_causal_convolution(batch, channels, length):
    torch.manual_seed(length)
    u = torch.randn(batch, channels, length, dtype=torch.float64, requires_grad=True)
    k = torch.randn(channels, length, dtype=torch.float64, requires_grad=True)
    g = torch.randn(batch, channels, length, dtype=torch.float64)
    y, want = dense_conv(u, k), direct_causal_conv(u, k)
    assert relative_error(y, want) <= 1e-13
    for got, expected in zip(torch.autograd.grad(y, (u, k), g), torch.autograd.grad(want, (u, k), g)):
        assert relative_error(got, expected) <= 1e-13
    assert torch.autograd.gradcheck(dense_conv, (u[:2, :2, :6].detach().requires_grad_(),
                                                 k[:2, :6].detach().requires_grad_()))


def test_float32_dense_conv_stays_within_float32_rounding_of_the_fft_convolution():
    torch.manual_seed(1)
    u, k = torch.randn(64, 64, 40), torch.randn(64, 40) * torch.exp(-torch.arange(40) / 10)
    reference = fft_conv(u.double(), k.double())
    assert relative_error(dense_conv(u, k), reference) <= 1e-6
    assert relative_error(fft_conv(u, k), reference) <= 1e-6


def test_cpus_convolve_short_sequences_densely_and_long_ones_by_fft():
    short, long = torch.randn(2, 3, MAX_LENGTH), torch.randn(2, 3, MAX_LENGTH + 1)
    assert dispatch.runs_dense(short) and not dispatch.runs_dense(long)
    assert torch.equal(dispatch.causal_conv(short, short[0]), dense_conv(short, short[0]))
    assert torch.equal(dispatch.causal_conv(long, long[0]), fft_conv(long, long[0]))
    assert not dispatch.runs_dense(torch.empty(2, 3, 8, device="meta"))  # other devices keep their own forms
