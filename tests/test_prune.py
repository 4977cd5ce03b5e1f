import lightning
import pytest
import torch
from conftest import TINY

from pipeline import data
from pipeline.analog import WeightNoise
from pipeline.config import ConfigError, parse
from pipeline.cost import model_proxies, proxies
from pipeline.data.datamodule import load_split
from pipeline.model import S4DClassifier
from pipeline.prune import attach_masks, fractions, prune
from pipeline.prune.search import entry_candidates, mode_candidates, remove
from pipeline.report import settings
from pipeline.scoring import accuracy
from pipeline.steps.prune import live_counts, pruned_copy
from pipeline.steps.qat import quantization
from pipeline.training import ClassifierModule, build_module, fit_classifier


def trained_model():
    torch.manual_seed(0)
    model = S4DClassifier(1, 3, d_model=4, d_state=6, n_layers=2).double()
    model.train()
    model(torch.randn(8, 20, 1, dtype=torch.float64))  # BatchNorm statistics away from their init
    return model.eval()


@pytest.mark.parametrize("mode", ["conv", "recurrent"])
def test_a_pruned_mode_contributes_nothing(mode):
    model = trained_model()
    reference = trained_model()
    with torch.no_grad():  # the same mode removed by hand: C and B̄'s source (nothing else needed for y)
        reference.blocks[1].ssm.C[2, 1] = 0.0
    layers = attach_masks(model)
    layers[1].mode.keep[2, 1] = 0.0
    x = torch.randn(3, 20, 1, dtype=torch.float64)
    assert torch.allclose(model(x, mode), reference(x, mode), atol=1e-10)
    A_bar, B_bar, C, _ = model.blocks[1].ssm.discrete()
    assert A_bar[2, 1] == 0 and B_bar[2, 1] == 0 and C[2, 1] == 0  # its block, row and column are gone


def test_masks_compose_with_quantization_and_noise_and_survive_save_and_load(tmp_path):
    config = parse({**TINY, "qat": {"bits": {"all": 3}}}, base=tmp_path)
    module = ClassifierModule(1, 10, config.model.model_dump(), config.pretrain.model_dump(),
                              quantization(config.qat), pruned=True, noise=WeightNoise(0.05, mixing=True))
    layers = attach_masks(module.model)
    _, _, before, _ = module.model.blocks[0].ssm.discrete()
    layers[0].mode.keep[0, 1] = 0.0
    layers[0].entries["C"].keep[1, 0, 1] = 0.0
    layers[0].mix.keep[0, 0, 0] = 0.0
    _, _, C, _ = module.model.blocks[0].ssm.discrete()
    assert C[0, 1] == 0 and C[1, 0].imag == 0 and C[1, 0].real == before[1, 0].real
    assert len(torch.unique(torch.view_as_real(C.detach())[..., 0])) <= 2 ** 3 + 1  # still on the 3-bit grid
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                "pytorch-lightning_version": lightning.__version__}, tmp_path / "m.ckpt")
    loaded = ClassifierModule.load(tmp_path / "m.ckpt")
    assert (loaded.quantization, loaded.weight_noise) == (module.quantization, module.weight_noise)
    assert loaded.bits == {"all": 3} and loaded.hparams.pruned
    assert torch.equal(attach_masks(loaded.model)[0].mode.keep, layers[0].mode.keep)
    x = torch.randn(2, 64, 1)
    assert torch.equal(loaded.eval()(x), module.eval()(x))
    assert fractions(attach_masks(loaded.model))["pruned/layer0/structured_frac"] == 1 / layers[0].mode.keep.numel()


def test_tolerance_zero_never_lowers_validation_accuracy(tiny, tmp_path, capsys):
    data.prepare(tiny, tmp_path / "prepared")
    float_module, _ = fit_classifier(tiny, tmp_path / "prepared", tmp_path / "fit")
    x, y = load_split(tmp_path / "prepared", "validation").tensors
    model = pruned_copy(float_module).model
    capsys.readouterr()
    result = prune(model, x, y, "conv", tolerance=0.0)
    lines = capsys.readouterr().out.splitlines()  # one line per granularity, as each finishes
    assert [line.split(":")[0] for line in lines] == [f"prune search (chunked), {g}" for g in result["removed"]]
    assert all(f": {n} of " in line for line, n in zip(lines, result["removed"].values()))
    assert result["val_acc"] >= result["baseline_val_acc"]
    assert accuracy(model, x, y, "conv") == result["val_acc"]
    assert sum(result["removed"].values()) > 0  # something was prunable for free


def test_nothing_prunable_gives_zero_fractions():
    model = trained_model()
    layers = attach_masks(model)
    for search in ("chunked", "sequential"):
        assert remove(mode_candidates(model, layers), score=lambda: 0.0, floor=1.0, search=search) == 0
        assert remove([], score=lambda: 1.0, floor=0.0, search=search) == 0
    assert set(fractions(layers).values()) == {0.0}


def test_costs_fall_by_the_pruned_entries(tmp_path):
    config = parse(TINY, base=tmp_path)
    module = build_module(config, {"d_in": 1, "n_classes": 10}, config.pretrain)
    pruned = pruned_copy(module)
    layers = attach_masks(pruned.model)
    H, N = config.model.d_model, config.model.d_state
    bits = {"A": 2, "C": 3, "state": 4, "act": 5, "mix": 6, "coder": 7}
    dense = model_proxies(1, H, N, 1, 10, bits)
    assert proxies(live_counts(pruned, layers), 1, 10, bits) == dense
    layers[0].mode.keep[0, :2] = 0.0     # two modes: 4 state entries, 4 C entries
    layers[0].entries["C"].keep[1, 0, 0] = 0.0  # one more C entry
    layers[0].entries["A_bar"].keep[1, 1, 1] = 0.0  # one Im Ā entry: one state entry fewer
    layers[0].mix.keep.view(-1)[:2 * H] = 0.0  # a fraction 2H/2H² of the GLU weights → H of the H² counted
    cost = proxies(live_counts(pruned, layers), 1, 10, bits)
    assert dense["size_bits"] - cost["size_bits"] == 5 * 2 + 5 * 3 + H * 6
    assert dense["ace"] - cost["ace"] == 4 * (5 * 2 + 5 * 3) + H * 5 * 6
    assert dense["adc"] - cost["adc"] == 5 * 4


def test_negative_tolerance_is_refused():
    with pytest.raises(ConfigError, match="prune.tolerance = -0.1"):
        parse({**TINY, "prune": {"tolerance": -0.1}})


def candidates_with_failures(n: int, bad: set[int]):
    """n candidates on one mask (saliency = index) and a score that fails while any of `bad` is removed."""
    from pipeline.prune import Mask
    mask = Mask("entry", (n,))
    calls = []

    def score() -> float:
        calls.append(1)
        return 0.0 if any(mask.keep[i] == 0 for i in bad) else 1.0
    return [(float(i), mask, i) for i in reversed(range(n))], mask, score, calls


@pytest.mark.parametrize("search,chunks", [("sequential", 256), ("chunked", 1000)])
def test_a_failing_candidate_is_skipped_and_the_search_goes_on(search, chunks):
    bad = {3, 17, 18, 40}  # a prefix search would stop at 3
    candidates, mask, score, calls = candidates_with_failures(64, bad)
    assert remove(candidates, score, floor=1.0, search=search, chunks=chunks) == 64 - len(bad)
    assert {i for i in range(64) if mask.keep[i] == 1} == bad
    if search == "sequential":
        assert len(calls) == 64  # one evaluation per candidate
    else:
        assert len(calls) < 64


def test_chunked_search_skips_a_failing_chunk_of_its_smallest_size_whole():
    candidates, mask, score, calls = candidates_with_failures(64, {5})
    assert remove(candidates, score, floor=1.0, search="chunked", chunks=16) == 60  # chunks of 4: 4..7 kept
    assert mask.keep[4:8].tolist() == [1.0] * 4 and mask.keep.sum() == 4


@pytest.mark.parametrize("mode", ["conv", "recurrent"])
def test_pruned_entries_of_every_s4d_tensor_are_zero_and_both_modes_agree(mode):
    model = trained_model()
    layers = attach_masks(model)
    layers[0].entries["A_bar"].keep[1, 0, 1] = 0.0  # Im Ā: the mode decays without rotating
    layers[0].entries["B_bar"].keep[2, 1, 0] = 0.0
    layers[0].entries["C"].keep[3, 2, 1] = 0.0
    layers[0].entries["D"].keep[0] = 0.0
    A_bar, B_bar, C, D = model.blocks[0].ssm.discrete()
    assert A_bar[1, 0].imag == 0 and A_bar[1, 0].real != 0 and B_bar[2, 1].real == 0 and C[3, 2].imag == 0
    assert D[0] == 0 and D[1] != 0
    x = torch.randn(3, 20, 1, dtype=torch.float64)
    assert torch.allclose(model(x, mode), model(x, "recurrent" if mode == "conv" else "conv"), atol=1e-9)
    fraction = fractions(layers)
    assert fraction["pruned/unstructured/D_frac"] == 1 / 8 and fraction["pruned/layer1/unstructured_frac"] == 0
    entries = 3 * 4 * 3 * 2 + 4
    assert fraction["pruned/layer0/unstructured_frac"] == pytest.approx(4 / entries)


def test_entry_candidates_cover_every_tensor_ranked_within_its_own_scale():
    model = trained_model()
    layers = attach_masks(model)
    layers[0].mode.keep[0, 0] = 0.0  # a pruned mode's entries are no candidates
    candidates = entry_candidates(model, layers)
    assert len(candidates) == 2 * (3 * 4 * 3 * 2 + 4) - 3 * 2
    assert {mask for _, mask, _ in candidates} == {m for l in layers for m in l.entries.values()}
    assert max(s for s, _, _ in candidates) == 1.0  # the largest entry of each tensor


def test_prune_search_and_split_are_validated():
    with pytest.raises(ConfigError, match="prune.search = 'greedy'"):
        parse({**TINY, "prune": {"search": "greedy"}})
    with pytest.raises(ConfigError, match="prune.select_on = 'train'"):
        parse({**TINY, "prune": {"select_on": "train"}})
    with pytest.raises(ConfigError, match="prune.chunks = 0"):
        parse({**TINY, "prune": {"chunks": 0}})


def test_the_report_labels_selection_on_the_test_set():
    lines = settings(parse({**TINY, "prune": {"select_on": "test", "search": "sequential"}}))
    pruning = next(line for line in lines if line.startswith("pruning"))
    assert "sequential" in pruning and "TEST" in pruning and "reproduction" in pruning
    assert "TEST" not in " ".join(settings(parse(TINY)))
