import json
import subprocess
import sys

import pytest

from pipeline.cost import LayerCounts, model_proxies, proxies, widths

SMALL = dict(n_layers=2, d_model=3, d_state=4, d_in=1, d_out=2)
BITS = {"A": 2, "C": 3, "state": 4, "act": 5, "mix": 6, "coder": 7}


def test_proxies_of_a_small_model_by_hand():
    # ACE  = 2·[3·4·4·(2+3) + 3²·5·6] + 3·1·7·5 + 3·2·7·5 = 2·(240 + 270) + 105 + 210
    # size = 2·[4·3·(2+3) + 3²·6] + (3·1 + 3·2)·7        = 2·(60 + 54) + 63
    # ADC  = 2·[(4·4 + 5)·3 + 3·6] + 3·5 + 2·5            = 2·(63 + 18) + 25
    # size as the authors' code counts it: the decoder as 3·1 weights, not 3·2: 291 − 3·7
    assert model_proxies(**SMALL, bits=BITS) == {"ace": 1335, "size_bits": 291, "size_bits_qs4d": 270, "adc": 187}


def test_the_authors_size_count_of_their_smnist_model():
    # 4 layers, H = N = 128, all 12 bits: 4·(128·128·24 + 128²·12) + 128·(1 + 1)·12, decoder with d_in = 1
    cost = model_proxies(4, 128, 128, 1, 10, {"all": 12})
    assert cost["size_bits_qs4d"] == 2_362_368 and cost["size_bits"] == 2_362_368 + 128 * 9 * 12


def test_float_counts_32_bits_and_all_is_the_default():
    assert widths({}) == dict.fromkeys(widths({}), 32)
    assert widths({"all": 4, "A": None}) == {"A": 32, "C": 4, "log_dt": 4, "state": 4, "act": 4, "mix": 4,
                                             "coder": 4}


def test_qs4d_float_scifar_model():
    # DESIGN.md: 4 layers × H 128 × N 128, float, grayscale sCIFAR: ACE about 2.03e8
    cost = model_proxies(4, 128, 128, 1, 10, {})
    assert cost["ace"] == pytest.approx(2.03e8, rel=0.005)
    assert cost["size_bits"] == 4 * (128 * 128 * 64 + 128 * 128 * 32) + 128 * 11 * 32


def test_uniform_bits_reduce_ace_quadratically_and_size_linearly():
    float_cost, quant_cost = model_proxies(**SMALL, bits={}), model_proxies(**SMALL, bits={"all": 4})
    assert float_cost["ace"] / quant_cost["ace"] == 64
    assert float_cost["size_bits"] / quant_cost["size_bits"] == 8


def test_live_counts_replace_dense_ones():
    dense = proxies([LayerCounts(12, 12, 9, 3)] * 2, 1, 2, BITS)
    assert dense == model_proxies(**SMALL, bits=BITS)
    # second layer: one complex mode gone (2 state and 2 C entries), 1 more C entry, 3 mixing weights
    pruned = proxies([LayerCounts(12, 12, 9, 3), LayerCounts(10, 9, 6, 3)], 1, 2, BITS)
    assert dense["size_bits"] - pruned["size_bits"] == 2 * 2 + 3 * 3 + 3 * 6
    assert dense["ace"] - pruned["ace"] == 4 * (2 * 2 + 3 * 3) + 3 * 5 * 6
    assert dense["adc"] - pruned["adc"] == 2 * 4


def test_command_line_calculator():
    args = ["--layers", "2", "--d-model", "3", "--d-state", "4", "--d-in", "1", "--d-out", "2", "--bits"]
    args += [f"{k}={v}" for k, v in BITS.items()]
    out = subprocess.run([sys.executable, "-m", "pipeline.cost", *args], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == {"ace": 1335, "size_bits": 291, "size_bits_qs4d": 270, "adc": 187}
    bad = subprocess.run([sys.executable, "-m", "pipeline.cost", "--bits", "B=4"], capture_output=True, text=True)
    assert bad.returncode == 2 and "allowed" in bad.stderr and "'A'" in bad.stderr
