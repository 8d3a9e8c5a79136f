"""Model folders: save -> load round trips bit-exactly; broken folders fail with clear errors."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from alpamayo_core.cli.make_tiny import make_tiny
from alpamayo_core.io.checkpoint import INDEX_NAME, CheckpointError
from alpamayo_core.io.model_io import load_model


@pytest.fixture
def model_copy(tiny_model_dir, tmp_path):
    return shutil.copytree(tiny_model_dir, tmp_path / "model")


def test_tiny_folder_loads_bit_exact_and_is_deterministic(tiny_model_dir, tmp_path):
    loaded = load_model(tiny_model_dir)
    again = make_tiny(tmp_path / "again", seed=0)
    reloaded = load_model(again)
    a, b = loaded.model.state_dict(), reloaded.model.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert loaded.model_id == reloaded.model_id
    assert len(json.loads((tiny_model_dir / INDEX_NAME).read_text())["weight_map"]) == len(a)


def test_different_seed_gives_different_weights_and_id(tiny_model_dir, tmp_path):
    other = load_model(make_tiny(tmp_path / "other", seed=1))
    base = load_model(tiny_model_dir)
    w = "action_out_proj.weight"
    assert not torch.equal(other.model.state_dict()[w], base.model.state_dict()[w])


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_model(tmp_path / "nope")


def test_missing_shard_names_the_file(model_copy):
    shard = sorted(model_copy.glob("model-*.safetensors"))[-1]
    shard.unlink()
    with pytest.raises(CheckpointError, match=shard.name):
        load_model(model_copy)


def test_corrupt_shard_is_reported(model_copy):
    shard = sorted(model_copy.glob("model-*.safetensors"))[0]
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="safetensors"):
        load_model(model_copy)


def test_wrong_shapes_are_reported(model_copy):
    cfg = json.loads((model_copy / "config.json").read_text())
    cfg["action_in_proj_cfg"]["hidden_size"] = 32
    (model_copy / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="shape"):
        load_model(model_copy)


def test_wrong_vocabulary_is_reported(model_copy):
    cfg = json.loads((model_copy / "config.json").read_text())
    cfg["vocab_size"] += 7
    (model_copy / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="tokenizer"):
        load_model(model_copy)


def test_missing_tokenizer_points_to_prepare(model_copy):
    (model_copy / "tokenizer.json").unlink()
    (model_copy / "vocab.json").unlink()
    with pytest.raises(FileNotFoundError, match="alpamayo-prepare"):
        load_model(model_copy)


def test_pickle_only_folder_is_refused(tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copy(make_tiny(tmp_path / "src") / "config.json", folder / "config.json")
    shutil.copytree(tmp_path / "src", folder, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("model*"))
    torch.save({"x": torch.zeros(1)}, folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="only safetensors"):
        load_model(folder)


@pytest.mark.parametrize("dtype, accel_std", [
    ("float32", float(torch.tensor(0.6810426736454882, dtype=torch.float32))),
    ("bfloat16", 0.6796875),  # R1 sheet §8.4: the bf16-rounded value
])
def test_action_space_statistics_follow_the_load_dtype(tiny_model_dir, dtype, accel_std):
    model = load_model(tiny_model_dir, dtype=dtype).model
    assert model.action_space.accel_std.dtype == getattr(torch, dtype)
    assert model.action_space.accel_std.item() == accel_std
    # The reference casts its action heads to expert_cfg.dtype (bf16) at every load dtype.
    assert model.action_in_proj.sinus[0].freqs.dtype == torch.bfloat16


def test_stats_dtype_override_in_config(model_copy):
    path = model_copy / "config.json"
    raw = json.loads(path.read_text())
    path.write_text(json.dumps({**raw, "stats_dtype": "bfloat16"}))
    space = load_model(model_copy, dtype="float32").model.action_space
    assert space.accel_std.dtype == torch.bfloat16 and space.accel_std.item() == 0.6796875
