import json
import math

import numpy as np
import pytest
import torch
from conftest import TINY

from pipeline.analog import export
from pipeline.analog.calibration import map_model
from pipeline.analog.converters import adc, dac
from pipeline.analog.device_model import Chips, drift_exponents, flicker_std
from pipeline.analog.devices import PRESETS, DeviceConfig
from pipeline.analog.mapping import FIXED_ROWS, layout, modes_per_tile, tensor_cells
from pipeline.analog.simulator import CrossbarSSM, simulated
from pipeline.analog.tile_read import pair_map, pair_map_grad, slot_form, through_pairs
from pipeline.config import ConfigError, parse
from pipeline.model import S4DClassifier
from pipeline.prune.masks import attach_masks
from pipeline.quant import quantize
from pipeline.steps.evaluate import duration

IDEAL = PRESETS["ideal"]


def model64(d_state: int = 12, **kwargs) -> S4DClassifier:
    torch.manual_seed(0)
    return S4DClassifier(3, 5, d_model=4, d_state=d_state, n_layers=2, **kwargs).double().eval()


def crossbar_logits(model, x, programs, device=IDEAL, chips=1, t=1.0, dac=None, adc=None, seed=0):
    out = simulated(model, programs, device, chips, t, dac, adc, seed)(x.repeat(chips, 1, 1))
    return out.view(chips, len(x), -1)


@pytest.mark.parametrize("row_gains", ["none", "inputs", "all"])
@pytest.mark.parametrize("mapping", ["full", "residual"])
@pytest.mark.parametrize("rows,cols", [(64, 64), (6, 10)])  # one tile per channel; 2 modes per tile, 3 tiles
def test_ideal_crossbar_reproduces_the_software_recurrence(rows, cols, mapping, row_gains):
    model, x = model64(), torch.randn(5, 20, 3, dtype=torch.float64)
    programs = map_model(model, [x], rows, cols, 1.1, IDEAL, mapping, row_gains)
    assert all(p.residual == (mapping == "residual") for p in programs)
    gains = torch.cat([p.row_gain.flatten(0, 1) for p in programs])
    assert (gains >= 1).all() and ((gains > 1).any() == (row_gains != "none"))
    assert row_gains == "all" or (gains[:, FIXED_ROWS:] == 1).all()
    assert programs[0].g_plus.shape[1] == (1 if rows == 64 else 3)
    reference = model(x, "recurrent")
    assert torch.allclose(crossbar_logits(model, x, programs, chips=2), reference.expand(2, -1, -1),
                          rtol=0, atol=1e-12 * reference.abs().max().item())


def test_ideal_crossbar_reproduces_a_quantized_pruned_model():
    model, x = model64(), torch.randn(5, 20, 3, dtype=torch.float64)
    quantize(model, {"A": 3, "C": 3}, target="deploy")
    masks = attach_masks(model)
    masks[0].mode.keep[0, :2] = 0  # channel 0 of layer 0 loses two of its six modes
    programs = map_model(model, [x], 64, 64, 1.1, IDEAL)
    assert (programs[0].modes[0] >= 0).sum() == 4 and (programs[0].modes[1] >= 0).sum() == 6
    assert torch.allclose(crossbar_logits(model, x, programs)[0], model(x, "recurrent"), atol=1e-12)


def test_tile_matrix_holds_the_real_recurrence():
    model = model64(d_state=2)  # one mode per channel
    A_bar, B_bar, C, D = model.blocks[0].ssm.discrete()
    (a, b), (c, d), (r, s) = [(z[0, 0].real.item(), z[0, 0].imag.item()) for z in (A_bar, B_bar, C)]
    expected = torch.tensor([[c, d, 0], [0, 0, D[0].item()], [a, b, 2 * r], [-b, a, -2 * s]], dtype=torch.float64)
    assert torch.allclose(layout(model.blocks[0].ssm, 1).weights[0, 0], expected)
    expected[2, 0] -= 1
    expected[3, 1] -= 1  # residual: the tile holds Ā − I
    assert torch.allclose(layout(model.blocks[0].ssm, 1, "residual").weights[0, 0], expected)
    assert modes_per_tile(64, 64) == 15 and modes_per_tile(4, 6) == 1 and modes_per_tile(3, 64) == 0


def grid(x: torch.Tensor, bits: int, full_scale) -> torch.Tensor:
    """The reference b-bit grid over ±full_scale: round(x / step)·step with step = full_scale / L, clipped at ±L."""
    levels = 2 ** (bits - 1) - 1
    step = full_scale / levels
    return torch.clamp(torch.round(x / step), -levels, levels) * step


def test_converters_round_to_the_grid_and_clip():
    x = torch.tensor([-3.0, -0.74, -0.2, 0.3, 0.76, 2.0])
    assert adc(torch.tensor(1.0), 2)(x)[0].tolist() == [-1.0, -1.0, -0.0, 0.0, 1.0, 1.0]  # 2 bits: {−1, 0, 1}
    codes = torch.tensor([-3.0, -1.0, 0.0, 0.0, 1.0, 3.0])  # 3 bits, full scale 2: L = 3, step 2/3
    assert torch.allclose(adc(torch.tensor(2.0), 3)(x)[0], codes * 2 / 3)
    assert torch.allclose(dac(torch.tensor(2.0), 3)(x)[0], codes / 3)  # a DAC reads in units of its full scale
    for bits in (2, 3, 8):  # a b-bit converter has at most 2^b codes: symmetric, 2^b − 1
        values = adc(torch.tensor(1.0), bits)(torch.linspace(-2, 2, 20001))[0]
        assert values.unique().numel() == 2 ** bits - 1
        assert torch.allclose(values, grid(torch.linspace(-2, 2, 20001), bits, 1.0), rtol=0, atol=1e-6)
    for key in ("dac_bits", "adc_bits"):  # one bit would leave the symmetric converter only its zero
        with pytest.raises(ConfigError, match=f"evaluate.{key} = 1"):
            parse({**TINY, "evaluate": {key: 1}})
    assert adc(torch.tensor(1.0), None)(x)[0] is x
    assert torch.equal(dac(torch.tensor(2.0), None)(x)[0], x / 2)


def test_converters_tell_where_they_clip():
    """Straight-through training passes gradient where a converter did not clip; with `pairs`, where neither part
    of a mode did (Converter.slope: 1/full scale for a DAC, 1 for an ADC)."""
    x = torch.tensor([-1.5, -0.3, 0.2, 0.9, 1.2])
    converter = dac(torch.tensor(2.0), 3)
    assert converter(2 * x, keep=True)[1].tolist() == [False, True, True, True, False]
    assert converter.slope == 0.5 and adc(torch.tensor(2.0), 3).slope == 1.0
    pairs = torch.tensor([[0.2, 1.2], [0.3, -0.4], [-1.5, 0.1]])
    assert dac(torch.tensor(1.0), 3)(pairs, pairs=True, keep=True)[1].tolist() == [False, True, False]
    assert dac(torch.tensor(1.0), 3)(pairs)[1] is None  # kept only when asked


def test_pair_map_is_the_two_by_two_product_and_its_gradient_is_autograds():
    """A mode's (Re, Im) pair times a real 2 × 2 block as a row vector, in the complex form the step loop uses
    (z ↦ p·z + q·z̄), and the block's gradient from that form's sums, against the real products and autograd."""
    torch.manual_seed(0)
    v = torch.randn(5, 3, 2, dtype=torch.float64)
    m = torch.randn(3, 2, 2, dtype=torch.float64, requires_grad=True)
    out = through_pairs(v, *pair_map(m))
    expected = torch.stack([v[..., 0] * m[..., 0, 0] + v[..., 1] * m[..., 1, 0],
                            v[..., 0] * m[..., 0, 1] + v[..., 1] * m[..., 1, 1]], -1)
    assert torch.allclose(out, expected, rtol=1e-14, atol=1e-14)
    g = torch.randn_like(out)
    (expected * g).sum().backward()
    z, gz = torch.view_as_complex(v), torch.view_as_complex(g)
    grad = pair_map_grad((z.conj() * gz).sum(0), (z * gz).sum(0))
    assert torch.allclose(grad, m.grad, rtol=1e-13, atol=1e-14)
    assert torch.allclose(through_pairs(g, *pair_map(m.detach().mT)),  # the transpose carries gradients back
                          torch.einsum("bkj,kij->bki", g, m.detach()), rtol=1e-14, atol=1e-14)


def one_layer_program(device):
    model, x = model64(), torch.randn(5, 20, 3, dtype=torch.float64)
    return map_model(model, [x], 64, 64, 1.1, device)[0]


def test_programming_noise_follows_the_device_polynomial():
    device = DeviceConfig(g_min=0.0, g_max=1e-5, prog_noise={1.0: [0.02, 0.04]})
    tiles = one_layer_program(device)
    g = Chips(tiles, device, 400, torch.Generator().manual_seed(0)).conductances(1.0)
    target = torch.stack([tiles.g_plus, tiles.g_minus])
    at_max = target == device.g_max
    spread = (g - target)[:, at_max].std().item()
    assert spread == pytest.approx(1e-5 * (0.02 + 0.04), rel=0.05)


def test_drift_follows_the_power_law_and_compensation_undoes_a_uniform_one():
    device = DeviceConfig(g_min=0.0, g_max=1e-5, drift_nu=0.05, drift_t0=20.0)
    tiles = one_layer_program(device)
    chips = Chips(tiles, device, 1, torch.Generator().manual_seed(0))
    year = 31536000.0
    assert torch.allclose(chips.conductances(year), chips.conductances(1.0) * (year / 20.0) ** -0.05)
    assert torch.allclose(chips.weights(year)[0], chips.weights(1.0)[0])
    assert torch.allclose(chips.weights(1.0)[0][0] / tiles.row_scale[..., None], tiles.weights())


def test_faults_and_ir_drop():
    stuck = DeviceConfig(g_min=1e-6, g_max=1e-5, stuck_on=1.0)
    tiles = one_layer_program(stuck)
    g = Chips(tiles, stuck, 1, torch.Generator()).conductances(1.0)
    assert torch.all(g[:, :, tiles.present] == 1e-5) and torch.all(g[:, :, ~tiles.present] == 0)
    drop = DeviceConfig(g_min=0.0, g_max=1e-5, ir_drop=0.1)
    chips = Chips(one_layer_program(drop), drop, 1, torch.Generator())
    factor = 1 - 0.1 * chips.distance
    assert factor.min().item() == pytest.approx(0.9) and factor.max().item() == pytest.approx(1.0)


def test_noisy_chips_differ_from_each_other_but_repeat_with_the_seed():
    model, x = model64(), torch.randn(5, 20, 3, dtype=torch.float64)
    programs = map_model(model, [x], 64, 64, 1.1, PRESETS["pcm"])
    torch.manual_seed(1)
    first = crossbar_logits(model, x, programs, PRESETS["pcm"], chips=3, t=86400.0, dac=8, adc=8)
    torch.manual_seed(1)
    again = crossbar_logits(model, x, programs, PRESETS["pcm"], chips=3, t=86400.0, dac=8, adc=8)
    assert torch.equal(first, again) and not torch.allclose(first[0], first[1])
    assert ((first - model(x, "recurrent")).norm() / first.norm()).item() < 0.5


def test_slot_form_holds_every_mapped_cell_and_steps_like_the_dense_tiles():
    model, x = model64(), torch.randn(5, 20, 3, dtype=torch.float64)
    quiet = PRESETS["pcm"].model_copy(update={"read_noise": 0.0})  # programming noise, drift, faults; no read noise
    program = map_model(model, [x], 6, 10, 1.1, quiet)[0]  # 3 tiles per channel
    weights, read_std = Chips(program, quiet, 2, torch.Generator().manual_seed(0)).weights(86400.0)
    held = sum(v.abs().sum() for v in slot_form(weights).values())
    assert torch.isclose(held, weights.abs().sum(), rtol=1e-12, atol=0)  # no cell left out

    u = torch.randn(2, 3, 4, 15, dtype=torch.float64)  # (chips, batch, H, L)
    _, T, R, K = program.g_plus.shape
    padded, state, outputs = torch.nn.functional.pad(u, (1, 1)), u.new_zeros(2, 3, 4, T, K - 1), []
    for t in range(16):  # the dense tile product, step by step: rows u_t, u_{t−1}, state
        inputs = torch.stack([padded[..., t + 1], padded[..., t]], -1)[..., None, :].expand(2, 3, 4, T, FIXED_ROWS)
        v = torch.cat([inputs, state], -1)
        out = grid(torch.einsum("cbhtr,chtrk->cbhtk", grid(v / program.row_scale, 8, 1.0), weights), 8,
                      program.col_scale)
        state = out[..., :-1]
        outputs.append(out[..., -1].sum(-1))
    expected = torch.stack(outputs[1:], -1).reshape(6, 4, 15)
    assert torch.allclose(CrossbarSSM(program, weights, read_std, 8, 8)(u.view(6, 4, 15)), expected, rtol=0,
                          atol=1e-12)


def test_program_export_round_trip(tmp_path):
    model, x = model64(), torch.randn(5, 20, 3, dtype=torch.float64)
    programs = map_model(model, [x], 6, 10, 1.1, PRESETS["rram"], "full", "inputs")
    paths = export.save(programs, tmp_path, "rram")
    assert [p.name for p in paths] == ["program.npz", "program.json"]
    loaded = export.load(tmp_path)
    for key, value in programs[0].tensors().items():
        assert torch.equal(getattr(loaded[0], key), value), key
    torch.manual_seed(0)
    direct = crossbar_logits(model, x, programs, PRESETS["rram"], chips=2, t=3600.0, dac=8, adc=8)
    torch.manual_seed(0)
    assert torch.equal(crossbar_logits(model, x, loaded, PRESETS["rram"], chips=2, t=3600.0, dac=8, adc=8), direct)


@pytest.mark.parametrize("change,message", [
    ({"custom_devices": {"bad": {"g_min": 2e-5, "g_max": 1e-5}}, "devices": ["bad"]}, "must be < g_max"),
    ({"device_overrides": {"pcm": {"levels": 1}}}, "levels"),
    ({"device_overrides": {"rram": {"stuck_off": 1.5}}}, "stuck_off"),
    ({"device_overrides": {"rram": {"read_noise": -0.1}}}, "read_noise"),
    ({"dac_bits": 17}, "dac_bits"),
    ({"adc_bits": 0}, "adc_bits"),
    ({"tile_rows": 3}, "tile_rows"),
    ({"tile_cols": 5}, "tile_cols"),
    ({"devices": ["sram"]}, "sram"),
    ({"row_gains": "split"}, "row_gains"),
])
def test_bad_crossbar_params_are_refused(change, message):
    with pytest.raises(ConfigError) as error:
        parse({**TINY, "evaluate": {**TINY["evaluate"], **change}})
    assert message in str(error.value) and "evaluate" in str(error.value)


def test_preset_values_are_cited_in_the_table():
    assert math.isclose(PRESETS["pcm"].g_max, 25e-6) and math.isclose(PRESETS["rram"].g_max, 40e-6)
    assert sorted(PRESETS["rram"].prog_noise) == [1.0, 86400.0, 172800.0]


def test_time_labels():
    assert [duration(t) for t in (1.0, 3600.0, 86400.0, 31536000.0, 90.0, 120.0, 2.5)] == \
        ["1s", "1h", "1d", "1y", "90s", "2min", "2.5s"]


def test_crossbar_evaluation_reports_each_device_and_time_as_it_finishes(capsys):
    from pipeline.steps.evaluate import crossbar_accuracy
    from pipeline.training import ClassifierModule

    config = parse({**TINY, "evaluate": {**TINY["evaluate"], "devices": ["ideal", "rram"], "chips": 2,
                                         "times": [1.0, 3600.0]}})
    torch.manual_seed(0)
    module = ClassifierModule(1, 10, config.model.model_dump(), config.pretrain.model_dump())
    x, y = torch.randn(8, 16, 1), torch.randint(0, 10, (8,))
    curves, _ = crossbar_accuracy(module, x, y, [x], config.evaluate)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["crossbar ideal at 1s", "crossbar ideal at 1h",
                                                      "crossbar rram at 1s", "crossbar rram at 1h"]
    assert f"accuracy {curves['rram']['1h']['mean']:.4f}" in lines[3] and "2 chips" in lines[3]


def test_crossbar_evaluation_and_energy_leave_the_model_in_the_mode_they_found_it():
    from pipeline.steps.evaluate import crossbar_accuracy, model_energy
    from pipeline.training import ClassifierModule

    config = parse({**TINY, "evaluate": {**TINY["evaluate"], "devices": ["ideal"], "chips": 1, "times": [1.0]}})
    module = ClassifierModule(1, 10, config.model.model_dump(), config.pretrain.model_dump())
    x, y = torch.randn(8, 16, 1), torch.randint(0, 10, (8,))
    module.model.blocks[0].eval()  # a mixed state, as a caller may have left it
    before = [m.training for m in module.modules()]
    crossbar_accuracy(module, x, y, [x], config.evaluate)
    model_energy(module, [x], 16, config.evaluate)
    assert [m.training for m in module.modules()] == before


def test_residual_mapping_shrinks_the_error_of_programming_noise_on_slow_modes():
    model = model64(d_state=8, dt_min=1e-3, dt_max=1e-2)  # |Ā| within 1% of 1
    x = torch.randn(8, 200, 3, dtype=torch.float64)
    device = IDEAL.model_copy(update={"prog_noise": {1.0: [0.02]}})  # 2% of g_max on every cell
    reference = model(x, "recurrent")

    def error(mapping):
        programs = map_model(model, [x], 64, 64, 1.1, device, mapping)
        return (crossbar_logits(model, x, programs, device, chips=4) - reference).pow(2).mean().sqrt().item()

    full, residual = error("full"), error("residual")
    assert residual < full / 3, (full, residual)


def test_a_format_1_program_loads_with_unattenuated_rows(tmp_path):
    model, x = model64(), torch.randn(5, 20, 3, dtype=torch.float64)
    programs = map_model(model, [x], 64, 64, 1.1, PRESETS["rram"])
    export.save(programs, tmp_path, "rram")
    arrays = dict(np.load(tmp_path / "program.npz"))
    np.savez_compressed(tmp_path / "program.npz", **{k: v for k, v in arrays.items() if not k.endswith("row_gain")})
    meta = json.loads((tmp_path / "program.json").read_text())
    (tmp_path / "program.json").write_text(json.dumps({**meta, "format": 1}))
    assert all(torch.equal(p.row_gain, torch.ones_like(p.row_scale)) for p in export.load(tmp_path))
    (tmp_path / "program.json").write_text(json.dumps({**meta, "format": 3}))
    with pytest.raises(ValueError, match="format 3"):
        export.load(tmp_path)


def test_scaled_row_gains_raise_b_and_d_to_the_column_maximum():
    model = model64(d_state=4, dt_min=1e-3, dt_max=1e-2)  # slow modes: B̄ ≈ Δ·B ≪ Ā ≈ 1 on the full mapping
    x = torch.randn(4, 30, 3, dtype=torch.float64)
    shared, scaled = (map_model(model, [x], 64, 64, 1.1, IDEAL, "full", rows)[0] for rows in ("none", "inputs"))
    weights = layout(model.blocks[0].ssm, modes_per_tile(64, 64), "full").weights * shared.row_scale[..., None]
    state_max = weights[..., FIXED_ROWS:, :].abs().amax(-2)
    for row in range(FIXED_ROWS):  # by hand: min over the row's cells of (column's largest state weight / cell)
        cells = weights[..., row, :].abs()
        expected = torch.stack([min(state_max[h, 0, k] / cells[h, 0, k] for k in range(cells.shape[-1])
                                    if cells[h, 0, k] > 0) for h in range(cells.shape[0])]).clamp_min(1)
        assert torch.allclose(scaled.row_gain[:, 0, row], expected)
    assert (scaled.row_gain[:, 0, 0] > 3).all()  # B̄ was a sliver of the range
    assert torch.equal(scaled.row_gain[..., FIXED_ROWS:], torch.ones_like(scaled.row_gain[..., FIXED_ROWS:]))
    assert torch.allclose(scaled.gain, shared.gain)  # no column's largest weight moved
    assert torch.allclose(scaled.g_plus[..., FIXED_ROWS:, :], shared.g_plus[..., FIXED_ROWS:, :])
    k = scaled.row_gain[..., :FIXED_ROWS, None]
    assert torch.allclose(scaled.g_plus[..., :FIXED_ROWS, :] - scaled.g_minus[..., :FIXED_ROWS, :],
                          k * (shared.g_plus[..., :FIXED_ROWS, :] - shared.g_minus[..., :FIXED_ROWS, :]))
    assert torch.allclose(scaled.per_dac_unit(), shared.per_dac_unit(), rtol=1e-12, atol=0)
    assert torch.allclose(scaled.read_cells()[..., :FIXED_ROWS, :],  # read at 1/k of the voltage: variance / k²
                          2 * scaled.present[..., :FIXED_ROWS, :] / k ** 2)


def test_scaled_row_gains_divide_the_programming_error_of_b_by_k():
    model = model64(d_state=4, dt_min=1e-3, dt_max=1e-2)
    x = torch.randn(4, 30, 3, dtype=torch.float64)
    device = IDEAL.model_copy(update={"prog_noise": {1.0: [0.02]}, "g_min": 0.2 * IDEAL.g_max})  # 2% of g_max,
    # far from the clamp at 0

    def error(rows):
        program = map_model(model, [x], 64, 64, 1.1, device, "full", rows)[0]
        drawn, _ = Chips(program, device, 64, torch.Generator().manual_seed(0)).weights(1.0)
        return program, drawn - program.per_dac_unit()

    (_, e_shared), (scaled, e_scaled) = error("none"), error("inputs")
    assert torch.allclose(e_scaled[..., FIXED_ROWS:, :], e_shared[..., FIXED_ROWS:, :])  # Ā and C: as before
    k = scaled.row_gain[..., :FIXED_ROWS, None]  # the same draws: every B̄ and D cell's error divided by its k
    assert torch.allclose(e_shared[..., :FIXED_ROWS, :], k * e_scaled[..., :FIXED_ROWS, :], rtol=1e-9, atol=1e-18)
    assert (k[:, 0, 0] > 3).all()


def test_gains_on_all_rows_raise_every_row_to_its_columns_largest_weight():
    model, x = model64(), torch.randn(5, 20, 3, dtype=torch.float64)
    none, every = (map_model(model, [x], 64, 64, 1.1, IDEAL, "residual", rows)[0] for rows in ("none", "all"))
    assert torch.allclose(every.gain, none.gain)  # the columns' largest weights stay where they were
    level = (every.g_plus - every.g_minus).abs() / (every.g_max - every.g_min)  # a cell's share of its column's max
    used = every.present.any(-1)
    assert torch.allclose(level.amax(-1)[used], torch.ones(()).double())  # every row reaches one column's max
    assert (every.row_gain[..., FIXED_ROWS:] > 1).any() and torch.allclose(every.per_dac_unit(), none.per_dac_unit())


def test_tensor_cells_name_every_mapped_cell_once():
    model = model64()
    tiles = layout(model.blocks[0].ssm, 2, "residual")  # 2 modes per tile: 6 rows, 5 columns
    masks = tensor_cells(*tiles.weights.shape[-2:])
    assert sum(m.int() for m in masks.values()).max() == 1  # no cell in two tensors
    covered = torch.stack(list(masks.values())).any(0)
    assert not (tiles.present & ~covered).any()  # every present cell in one
    A_bar, B_bar, C, D = model.blocks[0].ssm.discrete()
    n = int(tiles.modes[0, 0, 0])
    assert tiles.weights[0, 0][masks["B_bar"]][0] == B_bar[0, n].real  # slot 0's Re B̄
    assert tiles.weights[0, 0][masks["D"]] == D[0] and tiles.weights[0, 0][masks["C"]][0] == 2 * C[0, n].real


def test_pcm_drift_exponents_and_flicker_noise_by_hand():
    """Nandakumar et al.'s PCM statistics (as aihwkit implements them), against values computed by hand."""
    g = torch.tensor([1.0, 0.1, 0.01], dtype=torch.float64)
    zero, one = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    # μ = clip(−0.0155·ln g + 0.0244, 0.049, 0.1): 0.049 (clipped), 0.0356905 + 0.0244, 0.0713801 + 0.0244
    assert torch.allclose(drift_exponents(g, zero), torch.tensor([0.049, 0.0600905, 0.0957801], dtype=torch.float64),
                          atol=1e-6)
    # σ = clip(−0.0125·ln g − 0.0059, 0.008, 0.045): 0.008 (clipped), 0.0287823 − 0.0059, 0.045 (clipped)
    spread = drift_exponents(g, one) - drift_exponents(g, zero)
    assert torch.allclose(spread, torch.tensor([0.008, 0.0228823, 0.045], dtype=torch.float64), atol=1e-6)
    assert drift_exponents(g, -100 * one).min() > 0  # |μ + σ·z|
    # q = 0.0088/g^0.65 ≤ 0.2 (0.0088, 0.0393084, 0.784 → 0.2), times √ln((t + t0 + 250 ns)/500 ns);
    # 1 day: ln(86420 s / 500 ns) = 25.8756
    q = torch.tensor([0.0088, 0.0393084, 0.2], dtype=torch.float64)
    g = torch.tensor([1.0, 0.1, 0.001], dtype=torch.float64)
    assert torch.allclose(flicker_std(g, 0.0088, 86400.0, 20.0), q * math.sqrt(25.87563), rtol=1e-5)
    assert flicker_std(g, 0.0088, 86400.0, 20.0)[0] == pytest.approx(0.04476, rel=1e-3)
    assert flicker_std(g[:1], 0.0088, 31536000.0, 20.0) > flicker_std(g[:1], 0.0088, 86400.0, 20.0)  # grows


def test_pcm_chips_apply_those_statistics_cell_by_cell():
    pcm = PRESETS["pcm"]
    tiles = one_layer_program(pcm)
    chips = Chips(tiles, pcm, 2, torch.Generator().manual_seed(0))
    target = torch.stack([tiles.g_plus, tiles.g_minus]).to(torch.float64)
    programmed = (target + chips._sigma(target, 86400.0) * chips.z).clamp_min(0)
    generator = torch.Generator().manual_seed(0)  # the chips' draws again: z, then ν's normal deviates
    z, z_nu = (torch.randn(chips.z.shape, generator=generator, dtype=torch.float64) for _ in range(2))
    assert torch.equal(chips.z, z) and torch.equal(chips.nu, drift_exponents(target / pcm.g_max, z_nu))
    drifted = programmed * (86400.0 / 20.0) ** (-chips.nu)
    expected = (drifted * (1 + flicker_std(programmed / pcm.g_max, 0.0088, 86400.0, 20.0) * chips.z_flicker)
                ).clamp_min(0) * tiles.present
    assert torch.allclose(chips.conductances(86400.0), expected, rtol=1e-12, atol=0)
    slow = chips.nu[:, :, tiles.g_plus < 0.05 * pcm.g_max].mean()
    fast = chips.nu[:, :, tiles.g_plus > 0.9 * pcm.g_max].mean()
    assert slow > fast  # low conductances drift faster
    rram = Chips(tiles, PRESETS["rram"], 2, torch.Generator().manual_seed(0))
    assert rram.z_flicker is None and torch.equal(rram.z, chips.z)  # other devices draw exactly as before
