"""The patch embedding of raw uint8 images (`model_size_images`) against the reference's
normalised, time-repeated patches through HF's own modules."""

from __future__ import annotations

import copy

import pytest
import torch

from alpamayo_core.inputs.images import model_size_images, preprocess_images
from alpamayo_core.inputs.tiny_tokenizer import tiny_base_tokenizer
from alpamayo_core.model.config import preset, with_vocab_size
from alpamayo_core.model.vlm import build_vlm
from alpamayo_core.model.vocabulary import TokenIds, extend_tokenizer


@pytest.fixture(scope="module")
def models_and_cfg():
    """Ours and HF's unmodified VLM with the same weights."""
    tok = extend_tokenizer(tiny_base_tokenizer(), preset("tiny").tokens)
    cfg = with_vocab_size(preset("tiny"), len(tok))
    ids = TokenIds.from_tokenizer(tok, cfg.tokens)
    torch.manual_seed(0)
    ours = build_vlm(cfg, ids)
    plain = build_vlm(cfg, ids, plain=True)
    plain.load_state_dict(ours.state_dict())
    return ours, plain, cfg


def _frames(n: int = 3) -> torch.Tensor:
    """(n, 3, 96, 160) uint8 as a channels-last view of HWC frames (as cameras give them)."""
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (n, 96, 160, 3), dtype=torch.uint8, generator=g).permute(
        0, 3, 1, 2)


def test_raw_images_embed_as_the_reference_patches_do(models_and_cfg):
    ours, plain, cfg = models_and_cfg
    frames = _frames()
    images = model_size_images(frames, cfg.images, cfg.vision)
    patches = preprocess_images(frames, cfg.images, cfg.vision)
    with torch.no_grad():
        a = ours.model.visual.patch_embed(images.pixel_values)
        b = plain.model.visual.patch_embed(patches.pixel_values)  # HF's Conv3d
        c = ours.model.visual.patch_embed(patches.pixel_values)  # the matmul form
    k = int(images.image_grid_thw[0].prod())  # patches per image
    assert a.shape == b.shape == (3 * k, cfg.vision.hidden_size)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(c, b, rtol=1e-5, atol=1e-5)
    # Not a constant or a shuffle: each image's embedding depends on that image only.
    with torch.no_grad():
        alone = ours.model.visual.patch_embed(images.pixel_values[1:2])
    torch.testing.assert_close(alone, a[k:2 * k], rtol=0, atol=0)
    assert not torch.allclose(a[:k], a[k:2 * k])


def test_raw_images_through_the_tower_and_the_model_equal_the_reference(models_and_cfg):
    ours, plain, cfg = models_and_cfg
    frames = _frames()
    images = model_size_images(frames.contiguous(), cfg.images, cfg.vision)  # NCHW works too
    patches = preprocess_images(frames, cfg.images, cfg.vision)
    with torch.no_grad():
        a, a_deep = ours.model.visual(images.pixel_values, grid_thw=images.image_grid_thw)
        b, b_deep = plain.model.visual(patches.pixel_values, grid_thw=patches.image_grid_thw)
        # HF's own `get_image_features` casts the uint8 images to float first.
        c, _ = ours.model.get_image_features(images.pixel_values, images.image_grid_thw)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    for x, y in zip(a_deep, b_deep, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(torch.cat(c), a, rtol=1e-5, atol=1e-5)


def test_raw_images_in_bfloat16_stay_within_bf16_rounding(models_and_cfg):
    ours, _, cfg = models_and_cfg
    frames = _frames(2)
    images = model_size_images(frames, cfg.images, cfg.vision)
    patches = preprocess_images(frames, cfg.images, cfg.vision)
    embed = copy.deepcopy(ours.model.visual.patch_embed).to(torch.bfloat16)
    with torch.no_grad():
        ref = ours.model.visual.patch_embed(patches.pixel_values)  # float32
        out = embed(images.pixel_values)
    assert out.dtype == torch.bfloat16
    err = (out.float() - ref).abs().max() / ref.abs().max()
    assert err < 2e-2, err



def test_folded_weights_follow_the_parameters_and_train(models_and_cfg):
    """The folded weight is kept between plans but recomputed after an in-place weight change
    (as loading a checkpoint makes), and under autograd it passes gradients to the conv."""
    ours, plain, cfg = models_and_cfg
    embed = copy.deepcopy(ours.model.visual.patch_embed)
    reference = copy.deepcopy(plain.model.visual.patch_embed)
    frames = _frames(1)
    images = model_size_images(frames, cfg.images, cfg.vision).pixel_values
    patches = preprocess_images(frames, cfg.images, cfg.vision).pixel_values
    with torch.no_grad():
        before = embed(images)
        assert embed._folded()[0] is embed._folded()[0]  # kept, not recomputed
        for module in (embed, reference):
            module.proj.weight.mul_(-0.5)
            module.proj.bias.add_(1.0)
        after = embed(images)
        torch.testing.assert_close(after, reference(patches), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(before, after)
    embed(images).square().sum().backward()
    assert embed.proj.weight.grad is not None and embed.proj.weight.grad.abs().sum() > 0
    assert embed.proj.bias.grad is not None

def test_pixels_of_the_wrong_shape_are_rejected(models_and_cfg):
    embed = models_and_cfg[0].model.visual.patch_embed
    with pytest.raises(ValueError, match="pixel_values: expected"):
        embed(torch.zeros(4, 100))
    with pytest.raises(ValueError, match="multiples of 32"):
        embed(torch.zeros(1, 3, 96, 150, dtype=torch.uint8))
    with pytest.raises(ValueError, match="3 channels"):
        embed(torch.zeros(1, 4, 96, 160, dtype=torch.uint8))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (cuDNN conv2d)")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_raw_images_on_cuda_match_the_reference_patches_on_cpu(models_and_cfg, dtype):
    ours, plain, cfg = models_and_cfg
    frames = _frames()
    images = model_size_images(frames, cfg.images, cfg.vision, device="cuda")
    assert images.pixel_values.device.type == "cuda"
    assert images.pixel_values.dtype == torch.uint8  # uint8 crosses to the device
    patches = preprocess_images(frames, cfg.images, cfg.vision)
    embed = copy.deepcopy(ours.model.visual.patch_embed).to("cuda", dtype)
    with torch.no_grad():
        out = embed(images.pixel_values)
        ref = plain.model.visual.patch_embed(patches.pixel_values)  # HF's Conv3d, fp32, CPU
    assert out.dtype == dtype
    err = (out.float().cpu() - ref).abs().max() / ref.abs().max()
    # float32: cuDNN may run the convolution in TF32 (torch's default for convolutions).
    assert err < (2e-3 if dtype == torch.float32 else 2e-2), err
