"""The module tree's state_dict matches the released checkpoint's keys and shapes.

Built on the meta device: no memory is allocated for the 11B parameters. The expected table is
written out independently from the reference fact sheet (§2), not derived from our modules.
"""

from __future__ import annotations

import pytest
import torch

from alpamayo_core.inputs.tiny_tokenizer import released_layout_base_tokenizer
from alpamayo_core.model.alpamayo import AlpamayoR1
from alpamayo_core.model.config import preset
from alpamayo_core.model.vocabulary import TokenIds, extend_tokenizer


@pytest.fixture(scope="module")
def released_ids() -> TokenIds:
    tok = extend_tokenizer(released_layout_base_tokenizer(), preset("alpamayo-r1-10b").tokens)
    return TokenIds.from_tokenizer(tok, preset("alpamayo-r1-10b").tokens)


def _meta_model(name: str, ids: TokenIds) -> AlpamayoR1:
    with torch.device("meta"):
        return AlpamayoR1(preset(name), ids)


def _vision_table() -> dict[str, tuple[int, ...]]:
    v = "vlm.model.visual."
    table = {v + "patch_embed.proj.weight": (1152, 3, 2, 16, 16),
             v + "patch_embed.proj.bias": (1152,), v + "pos_embed.weight": (2304, 1152)}
    for i in range(27):
        b = f"{v}blocks.{i}."
        for norm in ("norm1", "norm2"):
            table[b + norm + ".weight"] = table[b + norm + ".bias"] = (1152,)
        table |= {b + "attn.qkv.weight": (3456, 1152), b + "attn.qkv.bias": (3456,),
                  b + "attn.proj.weight": (1152, 1152), b + "attn.proj.bias": (1152,),
                  b + "mlp.linear_fc1.weight": (4304, 1152), b + "mlp.linear_fc1.bias": (4304,),
                  b + "mlp.linear_fc2.weight": (1152, 4304), b + "mlp.linear_fc2.bias": (1152,)}
    mergers = [v + "merger."] + [f"{v}deepstack_merger_list.{i}." for i in range(3)]
    for m in mergers:
        norm = 1152 if m.endswith("merger.") and "deepstack" not in m else 4608
        table |= {m + "norm.weight": (norm,), m + "norm.bias": (norm,),
                  m + "linear_fc1.weight": (4608, 4608), m + "linear_fc1.bias": (4608,),
                  m + "linear_fc2.weight": (4096, 4608), m + "linear_fc2.bias": (4096,)}
    return table


def _decoder_table(prefix: str, layers: int, hidden: int, heads: int, mlp: int
                   ) -> dict[str, tuple[int, ...]]:
    table = {prefix + "norm.weight": (hidden,)}
    for i in range(layers):
        b = f"{prefix}layers.{i}."
        table |= {b + "self_attn.q_proj.weight": (heads * 128, hidden),
                  b + "self_attn.k_proj.weight": (1024, hidden),
                  b + "self_attn.v_proj.weight": (1024, hidden),
                  b + "self_attn.o_proj.weight": (hidden, heads * 128),
                  b + "self_attn.q_norm.weight": (128,), b + "self_attn.k_norm.weight": (128,),
                  b + "mlp.gate_proj.weight": (mlp, hidden),
                  b + "mlp.up_proj.weight": (mlp, hidden),
                  b + "mlp.down_proj.weight": (hidden, mlp),
                  b + "input_layernorm.weight": (hidden,),
                  b + "post_attention_layernorm.weight": (hidden,)}
    return table


def _released_table() -> dict[str, tuple[int, ...]]:
    table = _vision_table()
    table |= _decoder_table("vlm.model.language_model.", 36, 4096, 32, 12288)
    table["vlm.model.language_model.embed_tokens.weight"] = (155697, 4096)
    table["vlm.lm_head.weight"] = (155697, 4096)
    table |= _decoder_table("expert.", 36, 2048, 16, 8256)
    a = "action_in_proj."
    table |= {a + "sinus.0.freqs": (1, 10), a + "sinus.1.freqs": (1, 10),
              a + "timestep_fourier_encoder.freqs": (1, 10),
              a + "encoder.trunk.0.weight": (512, 60), a + "encoder.trunk.0.bias": (512,),
              a + "encoder.trunk.2.weight": (512,), a + "encoder.trunk.3.weight": (512, 512),
              a + "encoder.trunk.3.bias": (512,), a + "encoder.trunk.5.weight": (512,),
              a + "encoder.trunk.6.weight": (2048, 512), a + "encoder.trunk.6.bias": (2048,),
              a + "norm.weight": (2048,), a + "norm.bias": (2048,),
              "action_out_proj.weight": (2, 2048), "action_out_proj.bias": (2,)}
    for name in ("accel_mean", "accel_std", "curvature_mean", "curvature_std"):
        table[f"action_space.{name}"] = ()
    return table


def test_released_keys_and_shapes_match_the_checkpoint(released_ids):
    model = _meta_model("alpamayo-r1-10b", released_ids)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    want = _released_table()
    assert sorted(set(want) - set(got)) == []
    assert sorted(set(got) - set(want)) == []
    wrong = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
    assert wrong == {}
    assert all(v.is_meta for v in model.state_dict().values())


def test_released_parameter_count_is_exact(released_ids):
    model = _meta_model("alpamayo-r1-10b", released_ids)
    assert sum(p.numel() for p in model.parameters()) == 11_078_526_194
    assert sum(p.numel() for p in model.expert.parameters()) == 2_279_238_656
    assert sum(p.numel() for p in model.action_in_proj.parameters()) == 1_349_632


def test_release_runs_bf16_stats_and_sdpa(released_ids):
    model = _meta_model("alpamayo-r1-10b", released_ids)
    assert model.action_space.accel_std.dtype == torch.bfloat16
    assert model.action_in_proj.sinus[0].freqs.dtype == torch.bfloat16
    assert model.vlm.config._attn_implementation == "sdpa"


def test_seed_2b_variant_builds_with_a_layer_map(released_ids):
    model = _meta_model("seed-2b", released_ids)
    sd = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expert_layers = {k.split(".")[2] for k in sd if k.startswith("expert.layers.")}
    vlm_layers = {k.split(".")[4] for k in sd if k.startswith("vlm.model.language_model.layers.")}
    assert len(expert_layers) == 12 and len(vlm_layers) == 28
    assert sd["expert.layers.0.self_attn.k_proj.weight"] == (1024, 2048)
    assert sd["vlm.model.language_model.layers.0.self_attn.k_proj.weight"] == (1024, 2048)
    assert model.expert.layer_map == tuple(range(16, 28))
    assert model.cfg.n_waypoints == 48 and model.cfg.flow.num_steps == 50


def test_vocabulary_mismatch_is_rejected(released_ids):
    cfg = preset("tiny")
    with pytest.raises(ValueError, match="vocab_size"), torch.device("meta"):
        AlpamayoR1(cfg, released_ids)
