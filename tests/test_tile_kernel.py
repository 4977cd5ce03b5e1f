"""The Triton tile kernel against the step-by-step loop: compiled on a GPU, under Triton's interpreter elsewhere
(conftest sets TRITON_INTERPRET)."""
import copy
import functools

import pytest
import torch
import triton
import triton.language as tl
from test_crossbar import model64

from pipeline.analog import tile_kernel
from pipeline.analog.calibration import map_model
from pipeline.analog.device_model import Chips
from pipeline.analog.devices import PRESETS
from pipeline.analog.mapping import live_widths
from pipeline.analog.simulator import CrossbarSSM
from pipeline.analog.tile_read import read_layer

ON = "cuda" if torch.cuda.is_available() else "cpu"


def chip_layer(read_noise: float, dac=8, adc=8, chips=2, rows=6, cols=10, mapping="full") -> CrossbarSSM:
    """Layer 0 of a small model (6 modes per channel) on PCM chips a day after programming: 3 tiles of 2 modes
    per channel on 6 × 10 tiles, a tile of 4 and one of 2 on 10 × 18 tiles."""
    model, x = model64(), torch.randn(5, 20, 3, dtype=torch.float64)
    device = PRESETS["pcm"].model_copy(update={"read_noise": read_noise})
    program = map_model(model, [x], rows, cols, 1.1, device, mapping)[0]
    weights, read_std = Chips(program, device, chips, torch.Generator().manual_seed(0)).weights(86400.0)
    return CrossbarSSM(program, weights, read_std, dac, adc)


def run_kernel(layer: CrossbarSSM, u: torch.Tensor, block: int = 8, widths: list[int] | None = None) -> torch.Tensor:
    """The kernel on `ON`, back on the CPU."""
    layer = copy.deepcopy(layer).to(ON)
    chips = layer.w_input.shape[0]
    y = tile_kernel.scan(u.to(ON).view(chips, -1, *u.shape[1:]), layer._slots("w"), layer._slots("cells"),
                         layer.read_std if layer.read_noise else None, layer.row_scale, layer.col_scale,
                         layer.dac_bits, layer.adc_bits, layer.residual, block=block, widths=widths)
    return y.reshape(u.shape).cpu()


@pytest.mark.parametrize("mapping", ["full", "residual"])
def test_kernel_steps_like_the_loop_with_device_errors_and_converters(mapping):
    layer = chip_layer(read_noise=0.0, mapping=mapping)
    assert layer.residual == (mapping == "residual")
    u = torch.randn(2 * 5, 4, 15, dtype=torch.float64)  # 5 sequences per chip: one partial block
    expected = layer(u)
    assert torch.allclose(run_kernel(layer, u), expected, rtol=0, atol=1e-12)
    slots, tiles = tile_kernel.pack(layer._slots("w"), layer._slots("cells"), None, layer.row_scale, layer.col_scale,
                                    8, 8)
    assert slots.shape == (2, 4, 3, 2, tile_kernel.SLOT_FIELDS) and tiles.shape == (2, 4, 3, tile_kernel.TILE_FIELDS)


@pytest.mark.parametrize("read_noise", [0.0, 0.05])
def test_tiles_with_fewer_modes_run_narrower_and_step_like_the_loop(read_noise, monkeypatch):
    layer = chip_layer(read_noise=read_noise, rows=10, cols=18)
    slots, _ = tile_kernel.pack(layer._slots("w"), layer._slots("cells"), layer.read_std, layer.row_scale,
                                layer.col_scale, 8, 8)
    assert slots.shape[2:4] == (2, 4) and tile_kernel.slot_widths(slots) == [4, 2]
    u = torch.randn(2 * 5, 4, 8, dtype=torch.float64)
    if read_noise == 0:
        assert torch.allclose(run_kernel(layer, u), layer(u), rtol=0, atol=1e-12)
    else:  # the narrow tile's slots draw their noise from the same streams as if it ran 4 slots wide
        torch.manual_seed(1)
        narrow = run_kernel(layer, u)
        monkeypatch.setattr(tile_kernel, "slot_widths", lambda slots: [slots.shape[3]] * slots.shape[2])
        torch.manual_seed(1)
        assert torch.equal(run_kernel(layer, u), narrow)


def test_widths_of_the_calibrated_slots_are_those_the_weights_show_and_wider_changes_nothing():
    model, x = model64(), torch.randn(5, 20, 3, dtype=torch.float64)
    program = map_model(model, [x], 10, 18, 1.1, PRESETS["pcm"], "full")[0]
    layer = chip_layer(read_noise=0.0, rows=10, cols=18)
    slots, _ = tile_kernel.pack(layer._slots("w"), layer._slots("cells"), None, layer.row_scale, layer.col_scale, 8, 8)
    assert live_widths(program.modes >= 0) == tile_kernel.slot_widths(slots) == [4, 2]
    u = torch.randn(2 * 5, 4, 8, dtype=torch.float64)
    assert torch.equal(run_kernel(layer, u, widths=[4, 4]), run_kernel(layer, u))


def test_kernel_read_noise_has_the_loops_spread_and_follows_the_seed():
    layer, quiet = chip_layer(read_noise=0.05, dac=None, adc=None), chip_layer(0.0, dac=None, adc=None)
    u = torch.randn(128, 4, 8, dtype=torch.float64)
    clean = quiet(u)
    torch.manual_seed(3)
    noisy = run_kernel(layer, u, block=64)
    torch.manual_seed(3)
    assert torch.equal(run_kernel(layer, u, block=64), noisy)
    spread_kernel = (noisy - clean).pow(2).mean().sqrt().item()
    spread_loop = (layer(u) - clean).pow(2).mean().sqrt().item()
    assert spread_loop > 0 and spread_kernel == pytest.approx(spread_loop, rel=0.1)


@pytest.mark.skipif(ON != "cuda", reason="needs a GPU")
def test_layer_uses_the_kernel_on_the_gpu_in_single_precision():
    layer = chip_layer(read_noise=0.0, dac=None, adc=None).float()
    u = torch.randn(2 * 40, 4, 50)
    expected = layer(u)
    got = layer.cuda()(u.cuda()).cpu()
    assert torch.allclose(got, expected, rtol=0, atol=1e-4 * expected.abs().max().item())


@pytest.mark.parametrize("mapping,rows,cols,bits,through", [("full", 6, 10, 4, False), ("residual", 6, 10, 4, True),
                                                           ("residual", 10, 18, None, False)])
def test_kernel_gradients_equal_autograd_through_the_loop(mapping, rows, cols, bits, through):
    """Back-propagation through time in the kernel against autograd through `tile_step`'s loop: the inputs', the
    slot weights' and the skip weights' gradients, with 4-bit converters (some clip: their gradient is cut) and
    ideal ones, over tiles of several widths, and with the state's gradient through other block weights."""
    layer = copy.deepcopy(chip_layer(read_noise=0.0, dac=bits, adc=bits, rows=rows, cols=cols, mapping=mapping))
    if bits:
        layer.col_scale /= 3  # ADCs that clip a share of the currents …
        layer.row_scale /= 6  # … and DACs a share of the states
    u = torch.randn(2 * 5, 4, 5, dtype=torch.float64)
    probe = torch.randn(2 * 5, 4, 5, dtype=torch.float64)

    def gradients(read):
        w = {k: v.detach().clone().to(ON).requires_grad_() for k, v in layer._slots("w").items()}
        x = u.to(ON).view(2, 5, 4, 5).requires_grad_()
        on = copy.deepcopy(layer).to(ON)
        jacobian = (on.w_block * 0.9).flip(-1) if through else None
        y = read(x, w, on._slots("cells"), None, on.row_scale, on.col_scale, bits, bits, layer.residual, jacobian)
        (y * probe.to(ON).view_as(y)).sum().backward()
        return y.detach().cpu(), x.grad.cpu(), {k: v.grad.cpu() for k, v in w.items()}

    in_blocks = functools.partial(tile_kernel.scan, block=4)  # 2 blocks of sequences per chip, the last partial
    (y_ref, gu_ref, gw_ref), (y, gu, gw) = gradients(read_layer), gradients(in_blocks)
    assert torch.allclose(y, y_ref, rtol=0, atol=1e-12)
    assert torch.allclose(gu, gu_ref, rtol=1e-9, atol=1e-12) and gu.abs().sum() > 0
    for name in gw_ref:
        assert torch.allclose(gw[name], gw_ref[name], rtol=1e-9, atol=1e-12), name
    if bits:  # the cut gradients matter: ideal converters would give others
        y_ideal, _, gw_ideal = gradients(lambda *a: read_layer(*a[:6], None, None, *a[-2:]))
        assert not torch.allclose(gw_ideal["block"], gw["block"], atol=1e-6)


@triton.jit
def _draw(out_ptr, seed, STREAMS: tl.constexpr, STEPS: tl.constexpr):
    """out (STEPS, 2, STREAMS): the kernel's read-noise normals, one stream per column."""
    stream = tl.arange(0, STREAMS).to(tl.int64)
    x, y, z, w, v, d = tile_kernel._seeded(seed, stream)
    for step in range(STEPS):
        x, y, z, w, v, d, first, second = tile_kernel._normals(x, y, z, w, v, d)
        tl.store(out_ptr + (2 * step) * STREAMS + stream, first)
        tl.store(out_ptr + (2 * step + 1) * STREAMS + stream, second)


def test_read_noise_streams_are_standard_normal_and_independent():
    streams, steps = 1024, 32
    out = torch.empty(steps, 2, streams, device=ON)
    _draw[(1,)](out, 7, STREAMS=streams, STEPS=steps)
    n = out.double().cpu()
    flat = n.flatten()
    assert abs(flat.mean()) < 4 / len(flat) ** 0.5 and flat.std() == pytest.approx(1, abs=0.01)
    assert (flat ** 3).mean().abs() < 0.05 and (flat ** 4).mean() == pytest.approx(3, abs=0.1)  # skew, kurtosis
    assert (flat.abs() > 3).double().mean() == pytest.approx(2.7e-3, rel=0.25)  # the tails of a normal
    series = n.reshape(2 * steps, streams)  # a stream's draws in order
    assert (series[1:] * series[:-1]).mean().abs() < 0.01  # no serial correlation
    assert (series[:, 1:] * series[:, :-1]).mean().abs() < 0.01  # neighbouring streams independent
    again = torch.empty_like(out)
    _draw[(1,)](again, 7, STREAMS=streams, STEPS=steps)
    assert torch.equal(again, out)
    _draw[(1,)](again, 8, STREAMS=streams, STEPS=steps)
    assert not torch.equal(again, out)


def seed_drawing(multiple_of_16: bool) -> None:
    """Seed torch so that `scan`'s next noise seed is (or is not) a multiple of 16, which Triton would compile a
    kernel of its own for if the seed were specialised like other integer arguments."""
    for candidate in range(10_000):
        torch.manual_seed(candidate)
        if (int(torch.randint(2 ** 31 - 1, ())) % 16 == 0) == multiple_of_16:
            torch.manual_seed(candidate)
            return
    raise AssertionError("no such seed")


@pytest.mark.skipif(ON != "cuda", reason="kernels are compiled on GPUs only")
def test_a_new_noise_seed_compiles_no_new_kernel():
    layer, u = chip_layer(read_noise=0.05), torch.randn(2 * 5, 4, 15, dtype=torch.float64)

    def compiled() -> int:
        return sum(len(cache[0]) for cache in tile_kernel._scan.device_caches.values())

    seed_drawing(multiple_of_16=False)
    run_kernel(layer, u)
    before = compiled()
    for multiple in (True, False, True):
        seed_drawing(multiple)
        run_kernel(layer, u)
    assert compiled() == before
