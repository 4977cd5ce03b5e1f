import pytest
import torch

from pipeline.analog.mapping import TileProgram
from pipeline.cost import energy
from pipeline.steps.evaluate import tile_counts

SHAPE = energy.Shape(d_in=1, classes=2, channels=1, layers=1, mix_out=1, steps=10, live_modes=(1,))
BITS8 = dict.fromkeys(("act", "coder", "mix"), 8)


def test_per_operation_energies_match_their_sources():
    assert energy.mac_pj(8, 8) == pytest.approx(0.2 + 0.1)                  # Horowitz: 8-bit mult + 32-bit add
    assert energy.mac_pj(32, 4) == pytest.approx(3.7 + 0.9)                 # float operand → fp32 MAC
    assert energy.mac_pj(32, 32) == pytest.approx(4.6)
    assert energy.adc_pj(8) == pytest.approx(3.1e-3 / 1.2e9 * 1e12)          # Kull 2013: 2.58 pJ
    assert energy.adc_pj(4) == pytest.approx(energy.adc_pj(8) / 16)
    assert energy.dac_pj(8) == pytest.approx(0.32e-3 / 1.1e9 * 1e12)          # Chen 2018: 0.291 pJ
    assert energy.dac_pj(12) == pytest.approx(energy.dac_pj(8) * 16)
    assert energy.DAC_1BIT_PJ == pytest.approx(4e-3 * 100e-9 / 1024 * 1e12)  # ISAAC: 0.39 pJ


def test_analog_energy_by_hand():
    tiles = [energy.Tiles(rows=4, cols=3, conductance=1e-5, tiles=1)]
    parts = energy.analog(SHAPE, tiles, BITS8, dac_bits=8, adc_bits=8, read_voltage=0.2, read_time=1e-8)
    sram8 = 8 * 10 / 64  # one 8-bit weight or activation from SRAM
    per_step = (0.3 + sram8) + 0.3 + (0.3 + sram8) + 2 * sram8 + 0.1  # encoder, norm, mixing, activations, pool
    assert parts["dac"] == pytest.approx(11 * 4 * 0.32e-3 / 1.1e9 * 1e12)  # 10 steps + 1 flush, one 8-bit DAC a row
    assert parts["adc"] == pytest.approx(11 * 3 * 3.1e-3 / 1.2e9 * 1e12)
    assert parts["cells"] == pytest.approx(11 * 0.2 ** 2 * 1e-5 * 1e-8 * 1e12)
    assert parts["decoder"] == pytest.approx(2 * (0.3 + sram8))
    assert sum(parts.values()) == pytest.approx(10 * per_step + 2 * (0.3 + sram8) + parts["dac"] + parts["adc"]
                                                + parts["cells"])


def test_digital_baselines_by_hand():
    int8 = energy.digital(SHAPE, 8)
    assert int8["recurrence"] == pytest.approx(10 * (8 * 0.3 + 10 * 1.25 + 0.3 + 1.25))
    fp32 = energy.digital(SHAPE, None)
    assert fp32["recurrence"] == pytest.approx(10 * (8 * 4.6 + 10 * 5.0 + 4.6 + 5.0))
    assert sum(fp32.values()) == pytest.approx(10 * (9.6 + 4.6 + 9.6 + 10 + 0.9) + 2 * 9.6 + 964)


def test_split_tiles_add_their_partial_sums_digitally():
    one = energy.analog(SHAPE, [energy.Tiles(4, 3, 0.0, 1)], BITS8, 8, 8, 0.2, 1e-8)
    three = energy.analog(SHAPE, [energy.Tiles(4, 3, 0.0, 3)], BITS8, 8, 8, 0.2, 1e-8)
    assert one["partial_sums"] == 0 and three["partial_sums"] == pytest.approx(10 * 2 * 0.1)


def test_residual_mapping_adds_the_state_back_digitally():
    tiles = [energy.Tiles(4, 3, 1e-5, 1)]
    full = energy.analog(SHAPE, tiles, BITS8, 8, 8, 0.2, 1e-8)
    residual = energy.analog(SHAPE, tiles, BITS8, 8, 8, 0.2, 1e-8, residual=True)
    assert residual["state_adds"] == pytest.approx(10 * 2 * 1 * 0.1)  # 10 steps, re and im of one live mode
    assert {k: v for k, v in residual.items() if k != "state_adds"} == full and "state_adds" not in full


def test_bit_serial_inputs_read_and_convert_once_per_bit():
    tiles = [energy.Tiles(rows=4, cols=3, conductance=1e-5, tiles=1)]
    multibit = energy.analog(SHAPE, tiles, BITS8, 4, 8, 0.2, 1e-8)
    serial = energy.analog(SHAPE, tiles, BITS8, 4, 8, 0.2, 1e-8, encoding="bit_serial")
    assert serial["dac"] == pytest.approx(11 * 4 * 4 * 0.390625)            # 4 reads a step, a 1-bit DAC per row
    assert serial["adc"] == pytest.approx(4 * multibit["adc"]) == pytest.approx(11 * 4 * 3 * 3.1e-3 / 1.2e9 * 1e12)
    assert serial["cells"] == pytest.approx(4 * multibit["cells"])
    assert serial["shift_adds"] == pytest.approx(11 * 3 * 3 * 0.1)          # 3 additions per column and step
    assert multibit["dac"] == pytest.approx(11 * 4 * 0.291 / 16, rel=1e-3) and "shift_adds" not in multibit
    assert {k: v for k, v in serial.items() if k not in ("dac", "adc", "cells", "shift_adds")} == {
        k: v for k, v in multibit.items() if k not in ("dac", "adc", "cells")}
    with pytest.raises(ValueError, match="encoding = 'serial'"):
        energy.analog(SHAPE, tiles, BITS8, 4, 8, 0.2, 1e-8, encoding="serial")


def test_an_attenuated_row_reads_its_cells_at_a_fraction_of_the_power():
    g = torch.tensor([[[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]]])  # (H, T, R, K) = (1, 1, 3, 2), siemens
    ones = torch.ones(1, 1, 3)
    program = TileProgram(g, 0.5 * g, g > 0, ones, torch.ones(1, 1, 2), torch.ones(1, 1, 2),
                          torch.zeros(1, 1, 1, dtype=torch.long), 0.0, 10.0, row_gain=torch.tensor([[[2.0, 1.0, 1.0]]]))
    counts = tile_counts([program])[0]
    assert counts.conductance == pytest.approx(1.5 * ((1 + 2) / 4 + 3 + 4 + 5 + 6))  # v²G: row 0 at half the voltage
    assert (counts.rows, counts.cols, counts.tiles) == (3, 2, 1)
