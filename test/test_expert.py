"""Expert, action projections and the denoise step on the tiny preset (random init)."""

import dataclasses
import math

import pytest
import torch
from transformers import DynamicCache
from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLTextModel

from alpamayo_core.model.action_proj import ActionInProj, FourierFeatures, make_action_out_proj
from alpamayo_core.model.config import ModelConfig, preset, with_vocab_size
from alpamayo_core.model.denoise_step import DenoiseStep, input_names, step_inputs
from alpamayo_core.model.expert import MASKED, Expert, ExpertPrefix, build_prefix, prefix_bias
from alpamayo_core.model.flow_matching import make_noise, sample

B, P, T = 2, 20, 64


def tiny(**expert_changes) -> ModelConfig:
    cfg = with_vocab_size(preset("tiny"), 32)
    if expert_changes:
        cfg = cfg.replace(expert=dataclasses.replace(cfg.expert, **expert_changes))
    return cfg


def randomized(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights everywhere, norms included (ones would hide a skipped norm)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            base = 1.0 if name.endswith("norm.weight") else 0.0
            p.copy_(base + 0.2 * torch.randn(p.shape, generator=gen))
    return module.eval()


def vlm_cache(cfg: ModelConfig, kv_heads=None, seed=1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    shape = (B, kv_heads or cfg.text.num_key_value_heads, P, cfg.text.head_dim)
    return [(torch.randn(shape, generator=gen), torch.randn(shape, generator=gen))
            for _ in range(cfg.text.num_hidden_layers)]


def make_prefix(expert: Expert, cache, valid_len=(P, P - 4)) -> ExpertPrefix:
    return expert.build_prefix(cache, torch.tensor([15, 11]), T,
                               valid_len=torch.tensor(valid_len))


def tokens(cfg: ModelConfig, seed=2) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, cfg.expert.hidden_size, generator=gen)


def test_expert_state_dict_matches_release_naming():
    cfg = tiny()
    e, kv, d = cfg.expert, cfg.expert.num_key_value_heads, cfg.expert.head_dim
    per_layer = {
        "self_attn.q_proj.weight": (e.num_attention_heads * d, e.hidden_size),
        "self_attn.k_proj.weight": (kv * d, e.hidden_size),
        "self_attn.v_proj.weight": (kv * d, e.hidden_size),
        "self_attn.o_proj.weight": (e.hidden_size, e.num_attention_heads * d),
        "self_attn.q_norm.weight": (d,), "self_attn.k_norm.weight": (d,),
        "mlp.gate_proj.weight": (e.intermediate_size, e.hidden_size),
        "mlp.up_proj.weight": (e.intermediate_size, e.hidden_size),
        "mlp.down_proj.weight": (e.hidden_size, e.intermediate_size),
        "input_layernorm.weight": (e.hidden_size,),
        "post_attention_layernorm.weight": (e.hidden_size,),
    }
    expected = {f"layers.{i}.{k}": s for i in range(e.num_hidden_layers)
                for k, s in per_layer.items()}
    expected["norm.weight"] = (e.hidden_size,)
    got = {k: tuple(v.shape) for k, v in Expert(cfg).state_dict().items()}
    assert got == expected


def test_action_in_proj_state_dict_matches_release_naming():
    cfg = tiny()
    h, out = cfg.action_in_proj.hidden_size, cfg.expert.hidden_size
    expected = {
        "sinus.0.freqs": (1, 10), "sinus.1.freqs": (1, 10),
        "timestep_fourier_encoder.freqs": (1, 10),
        "encoder.trunk.0.weight": (h, 60), "encoder.trunk.0.bias": (h,),
        "encoder.trunk.2.weight": (h,),
        "encoder.trunk.3.weight": (h, h), "encoder.trunk.3.bias": (h,),
        "encoder.trunk.5.weight": (h,),
        "encoder.trunk.6.weight": (out, h), "encoder.trunk.6.bias": (out,),
        "norm.weight": (out,), "norm.bias": (out,),
    }
    proj = ActionInProj(cfg.action_in_proj, out, cfg.expert.dtype)
    assert {k: tuple(v.shape) for k, v in proj.state_dict().items()} == expected
    freqs = [1, 1.671875, 2.78125, 4.65625, 7.75, 12.9375, 21.5, 36, 60, 100]
    assert proj.sinus[0].freqs.dtype == torch.bfloat16
    assert proj.sinus[0].freqs[0].tolist() == freqs
    out_proj = make_action_out_proj(out)
    assert {k: tuple(v.shape) for k, v in out_proj.state_dict().items()} == {
        "weight": (2, out), "bias": (2,)}


def test_fourier_features_follow_the_reference_operation_order():
    enc = FourierFeatures(20, 100.0, torch.bfloat16)
    u = torch.linspace(-3.0, 3.0, 4001)  # angles up to ~1900 rad, where the order shows
    angle = u[..., None] * enc.freqs.float() * 2 * torch.pi  # the reference: left to right
    expected = torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1) * math.sqrt(2)
    assert torch.equal(enc(u), expected)


def test_release_sizes_build_on_meta_with_exact_parameter_counts():
    cfg = preset("alpamayo-r1-10b")
    with torch.device("meta"):
        expert = Expert(cfg)
        proj = ActionInProj(cfg.action_in_proj, cfg.expert.hidden_size, cfg.expert.dtype)
    assert sum(p.numel() for p in expert.parameters()) == 2_279_238_656
    assert sum(p.numel() for p in proj.parameters()) == 1_349_632
    assert "rotary_emb.inv_freq" not in expert.state_dict()


def test_rotary_buffers_restored_after_meta_build():
    cfg = tiny()
    with torch.device("meta"):
        expert = Expert(cfg)
    expert.to_empty(device="cpu")
    expert.reset_rotary_buffers()
    assert torch.equal(expert.rotary_emb.inv_freq, Expert(cfg).rotary_emb.inv_freq)


def test_equal_mrope_rows_are_plain_rope():
    expert = Expert(tiny())
    pos = torch.tensor([[3, 400, 5000]])
    cos, sin = expert.rotary_emb(torch.zeros(1, 3, 1), pos)
    angle = pos[0, :, None].double() * expert.rotary_emb.inv_freq.double()
    angle = torch.cat([angle, angle], dim=-1)
    assert torch.allclose(cos[0].double(), angle.cos(), atol=1e-4)
    assert torch.allclose(sin[0].double(), angle.sin(), atol=1e-4)


def test_functional_expert_matches_hf_forward_with_cache():
    cfg = tiny()
    expert = randomized(Expert(cfg))
    hf = Qwen3VLTextModel(expert.config).eval()
    missing, unexpected = hf.load_state_dict(expert.state_dict(), strict=False)
    assert missing == ["embed_tokens.weight"] and unexpected == []
    cache_kv = vlm_cache(cfg)
    prefix = make_prefix(expert, cache_kv)
    hidden = tokens(cfg)
    cache = DynamicCache()
    for i, (k, v) in enumerate(zip(prefix.keys, prefix.values, strict=True)):
        cache.update(k, v, i)
    with torch.no_grad():
        ours = expert(hidden, prefix)
        ref = hf(inputs_embeds=hidden, position_ids=prefix.positions, past_key_values=cache,
                 attention_mask=prefix.attn_bias.expand(B, 1, T, P + T), use_cache=True)
    assert ours.shape == (B, T, cfg.expert.hidden_size)
    assert (ours - ref.last_hidden_state).abs().max() < 1e-5


def test_prefix_is_never_mutated():
    cfg = tiny()
    expert = randomized(Expert(cfg))
    cache_kv = vlm_cache(cfg)
    before = [(k.clone(), v.clone()) for k, v in cache_kv]
    prefix = make_prefix(expert, cache_kv)
    with torch.no_grad():
        outs = [expert(tokens(cfg), prefix) for _ in range(10)]
    for (k0, v0), (k1, v1) in zip(before, cache_kv, strict=True):
        assert torch.equal(k0, k1) and torch.equal(v0, v1)
    assert all(torch.equal(outs[0], o) for o in outs[1:])
    assert prefix.keys[0].shape[2] == P


def test_attention_is_non_causal():
    cfg = tiny()
    expert = randomized(Expert(cfg))
    prefix = make_prefix(expert, vlm_cache(cfg))
    hidden = tokens(cfg)
    changed = hidden.clone()
    changed[:, -1] += 1.0
    with torch.no_grad():
        delta = (expert(hidden, prefix) - expert(changed, prefix))[:, 0].abs().max()
    assert delta > 1e-4


def test_masked_prefix_slots_have_no_effect():
    cfg = tiny()
    expert = randomized(Expert(cfg))
    cache_kv = vlm_cache(cfg)
    valid = (P - 6, P - 3)
    garbage = []
    for k, v in cache_kv:
        k2, v2 = k.clone(), v.clone()
        for row, n in enumerate(valid):
            k2[row, :, n:] = 1e3 * torch.randn_like(k2[row, :, n:])
            v2[row, :, n:] = 1e3
        garbage.append((k2, v2))
    with torch.no_grad():
        clean = expert(tokens(cfg), make_prefix(expert, cache_kv, valid))
        dirty = expert(tokens(cfg), make_prefix(expert, garbage, valid))
        unmasked = expert(tokens(cfg), make_prefix(expert, garbage, (P, P)))
    assert torch.allclose(clean, dirty, atol=1e-6)
    assert (clean - unmasked).abs().max() > 1e-3


def test_prefix_bias_layout():
    bias = prefix_bias(5, 3, valid_len=torch.tensor([5, 2]),
                       key_padding_mask=torch.tensor([[True] * 5, [False, True, True, True,
                                                                   True]]))
    assert bias.shape == (2, 1, 1, 8) and bias.dtype == torch.float32
    masked = (bias[:, 0, 0] == MASKED).tolist()
    assert masked[0] == [False] * 8
    assert masked[1] == [True, False, True, True, True, False, False, False]


def test_layer_map_selects_vlm_layers():
    cfg = tiny(num_hidden_layers=1, layer_map=(1,))
    expert = randomized(Expert(cfg))
    cache_kv = vlm_cache(cfg)
    prefix = make_prefix(expert, cache_kv)
    assert len(prefix.keys) == 1
    assert prefix.keys[0] is cache_kv[1][0] and prefix.values[0] is cache_kv[1][1]
    wrong = make_prefix(expert, cache_kv[:1] * 2)  # layer 1 replaced by layer 0
    with torch.no_grad():
        assert (expert(tokens(cfg), prefix) - expert(tokens(cfg), wrong)).abs().max() > 1e-4


def test_prefix_errors_are_value_errors():
    cfg = tiny()
    expert = Expert(cfg)
    with pytest.raises(ValueError, match="kv heads"):
        make_prefix(expert, vlm_cache(cfg, kv_heads=4))
    with pytest.raises(ValueError, match="layer_map"):
        build_prefix(vlm_cache(cfg), (0, 5), torch.tensor([1, 1]), T, kv_heads=2, head_dim=32,
                     valid_len=torch.tensor([P, P]))
    one_layer = make_prefix(Expert(tiny(num_hidden_layers=1, layer_map=(0,))), vlm_cache(cfg))
    with pytest.raises(ValueError, match="prefix has 1 layers"):
        expert(tokens(cfg), one_layer)


def build_step(cfg: ModelConfig, seed=0) -> DenoiseStep:
    expert = Expert(cfg)
    step = DenoiseStep(ActionInProj(cfg.action_in_proj, cfg.expert.hidden_size,
                                    cfg.expert.dtype), expert,
                       make_action_out_proj(cfg.expert.hidden_size))
    return randomized(step, seed)


def test_denoise_step_shape_dtype_determinism():
    cfg = tiny()
    step = build_step(cfg)
    prefix = make_prefix(step.expert, vlm_cache(cfg))
    x = make_noise(B, T, torch.Generator().manual_seed(0))
    t = torch.tensor([0.0, 0.4])
    inputs = step_inputs(x, t, prefix)
    assert len(inputs) == len(input_names(cfg.expert.num_hidden_layers))
    with torch.no_grad():
        v1, v2 = step(*inputs), step(*inputs)
    assert v1.shape == (B, T, 2) and v1.dtype == torch.float32
    assert torch.equal(v1, v2) and torch.isfinite(v1).all()
    assert not torch.equal(v1, step(x, torch.tensor([0.5, 0.4]), *inputs[2:]))
    with torch.no_grad():
        bf16 = build_step(cfg).to(torch.bfloat16)(*inputs)
    assert bf16.dtype == torch.float32 and (bf16 - v1).abs().max() < 0.1 * v1.abs().max()


def test_denoise_step_drives_the_sampler_deterministically():
    cfg = tiny()
    step = build_step(cfg)
    prefix = make_prefix(step.expert, vlm_cache(cfg))
    noise = make_noise(B, T, torch.Generator().manual_seed(3))
    with torch.no_grad():
        a = sample(step.velocity_fn(prefix), noise, cfg.flow)
        b = sample(step.velocity_fn(prefix), noise.clone(), cfg.flow)
    assert a.shape == (B, T, 2) and torch.equal(a, b) and not torch.equal(a, noise)
