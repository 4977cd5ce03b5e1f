import shutil
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import ROOT, TINY

from pipeline import presets
from pipeline.config import ConfigError, load, parse
from pipeline.stage import set_up_process


def test_defaults_and_presets_validate():
    assert load(ROOT / "params.yaml").data.name == "mnist1d"
    found = presets.available(ROOT / "presets")
    assert {"mnist1d", "smnist", "psmnist", "scifar", "pathfinder32", "fsdd"} <= set(found)
    for path in found.values():
        load(path)


def test_gpu_presets_take_tf32_matrix_products_and_a_stage_process_sets_its_precision_from_the_params():
    for path in presets.available(ROOT / "presets").values():
        train = load(path).train
        assert train.matmul_precision == ("high" if train.accelerator == "auto" else "highest"), path.name
    before = torch.get_float32_matmul_precision()
    try:
        for value in ("high", "highest"):
            set_up_process(parse({**TINY, "train": {**TINY["train"], "matmul_precision": value}}))
            assert torch.get_float32_matmul_precision() == value
    finally:
        torch.set_float32_matmul_precision(before)


def test_every_params_file_has_every_key_dvc_tracks():
    """DVC refuses to run a stage whose listed params key is missing from params.yaml."""
    tracked = {p for f in ("dvc.yaml", "sweeps/dvc.yaml")
               for stage in yaml.safe_load((ROOT / f).read_text())["stages"].values()
               for p in stage.get("params", []) if isinstance(p, str)}  # {params.yaml: null} tracks the whole file
    for path in [ROOT / "params.yaml", *presets.available(ROOT / "presets").values()]:
        raw = yaml.safe_load(path.read_text())
        for key in tracked:
            node = raw
            for part in key.split("."):
                assert isinstance(node, dict) and part in node, f"{path.name}: {key}"
                node = node[part]


def test_unknown_key_names_key_and_allowed_keys():
    with pytest.raises(ConfigError) as error:
        parse({**TINY, "model": {"d_modle": 8}})
    message = str(error.value)
    assert "model" in message and "d_modle" in message and "d_model" in message


def test_unknown_section_is_refused():
    with pytest.raises(ConfigError, match="trian"):
        parse({**TINY, "trian": {}})


@pytest.mark.parametrize("section,key,value,allowed", [
    ("model", "d_model", 0, "greater than or equal to 1"),
    ("model", "mixing", "tanh", "'glu' or 'relu'"),
    ("model", "d_state", 7, "even"),
    ("pretrain", "ssm_lr", 0.01, "less than or equal to 0.001"),
    ("train", "precision", "8-bit", "32-true"),
    ("train", "devices", 2, "strategy: ddp_spawn"),
    ("train", "matmul_precision", "medium", "'highest' or 'high'"),
])
def test_bad_value_names_key_value_and_allowed(section, key, value, allowed):
    with pytest.raises(ConfigError) as error:
        parse({**TINY, section: {**TINY.get(section, {}), key: value}})
    message = str(error.value)
    assert f"{section}" in message and str(value) in message and allowed in message


def test_ddp_batch_must_split_evenly_over_the_processes():
    with pytest.raises(ConfigError, match="batch_size = 63 must be divisible by devices = 2"):
        parse({**TINY, "train": {**TINY["train"], "batch_size": 63, "devices": 2, "strategy": "ddp_spawn"}})


def test_unknown_data_set_lists_the_valid_ones():
    with pytest.raises(ConfigError) as error:
        parse({**TINY, "data": {"name": "cifar"}})
    assert "cifar" in str(error.value) and "smnist" in str(error.value)


def test_file_tracking_store_is_refused():
    with pytest.raises(ConfigError, match="file store"):
        parse({**TINY, "tracking": {"uri": "file:./mlruns"}})


def test_relative_paths_are_taken_from_the_params_file(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({**TINY, "data": {"name": "smnist", "source": "mnist"}}))
    config = load(tmp_path / "params.yaml")
    assert config.path(config.data.source) == tmp_path / "mnist"


def test_stage_exits_with_message_before_any_compute(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({**TINY, "pretrain": {"epochs": -1}}))
    result = subprocess.run([sys.executable, str(ROOT / "stages" / "pretrain.py"), "--data", "data/prepared", "--out",
                             "models/pretrain.ckpt", "--metrics", "metrics/pretrain.json"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "pretrain.epochs = -1" in result.stderr
    assert not (tmp_path / "models").exists() and not (tmp_path / "mlflow.db").exists()


def test_preset_switch_keeps_a_custom_params_file(tmp_path):
    (tmp_path / "presets").mkdir()
    for name in ("smnist", "mnist1d"):
        (tmp_path / "presets" / f"{name}.yaml").write_bytes((ROOT / "presets" / f"{name}.yaml").read_bytes())
    custom = "# mine\n" + (ROOT / "presets" / "mnist1d.yaml").read_text()
    (tmp_path / "params.yaml").write_text(custom)
    presets.switch("smnist", tmp_path)
    assert (tmp_path / "params.yaml.bak").read_text() == custom
    assert load(tmp_path / "params.yaml").data.name == "smnist"
    with pytest.raises(ConfigError, match="allowed"):
        presets.switch("nope", tmp_path)


def test_the_qs4d_overlay_applies_on_every_preset_changing_only_its_keys(tmp_path):
    overlay = presets.overrides(ROOT / "presets" / "overlays" / "qs4d.yaml")
    assert "qat.scheme=qs4d" in overlay and "prune.select_on=test" in overlay
    for name, path in presets.available(ROOT / "presets").items():
        text = presets.render(f"{name}+qs4d", ROOT)
        changed = [new for old, new in zip(path.read_text().splitlines(), text.splitlines()) if old != new]
        assert len(text.splitlines()) == len(path.read_text().splitlines()) and len(changed) <= len(overlay)
    shutil.copytree(ROOT / "presets", tmp_path / "presets")
    presets.switch("smnist+qs4d", tmp_path)
    config = load(tmp_path / "params.yaml")
    assert (config.data.name, config.qat.scheme, config.qat.init, config.model.a_init) == ("smnist", "qs4d",
                                                                                         "scratch", "qs4d")
    assert (config.prune.select_on, config.finetune.noise_protocol) == ("test", "paper")
    presets.switch("smnist", tmp_path)
    assert not (tmp_path / "params.yaml.bak").exists()  # a rendered preset is no user's file
    with pytest.raises(ConfigError, match=r"<preset>\+qs4d"):
        presets.switch("smnist+nope", tmp_path)
