"""Shared fixtures: the embedded tiny model folder, built once per session through the same
save/load code path as a real checkpoint."""

from __future__ import annotations

import pytest

from alpamayo_core.cli.make_tiny import make_tiny


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random-init model folder (config.json, safetensors shards, tokenizer)."""
    return make_tiny(tmp_path_factory.mktemp("models") / "tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_a15_model_dir(tmp_path_factory):
    """A tiny random-init Alpamayo 1.5 folder (preset `tiny-1.5`: the tiny R1 weights' shapes,
    the 1.5 config.json, tokenizer names and buffers)."""
    return make_tiny(tmp_path_factory.mktemp("models") / "tiny-1.5", seed=0,
                     preset_name="tiny-1.5")
