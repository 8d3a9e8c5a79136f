"""Batched image preprocessing against HF's slow Qwen2-VL image processor."""

import numpy as np
import pytest
import torch
from transformers import Qwen2VLImageProcessor

from alpamayo_core.inputs.images import (
    ImageInputs,
    model_size_images,
    preprocess_images,
    resize_to_model,
    resized_size,
)
from alpamayo_core.model.config import ImageConfig, preset

VISION = preset("tiny").vision
CFG = ImageConfig()


def _smooth_frames(n: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """(n, 3, H, W) uint8: upsampled coarse noise plus fine noise (camera-like spectrum)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, 256, (n, 3, height // 20, width // 20), generator=g)
    up = torch.nn.functional.interpolate(coarse.float(), size=(height, width), mode="bilinear")
    noise = torch.randint(-20, 21, up.shape, generator=g)
    return (up.round() + noise).clamp(0, 255).to(torch.uint8)


def _hf_slow(frames: torch.Tensor):
    proc = Qwen2VLImageProcessor(min_pixels=CFG.min_pixels, max_pixels=CFG.max_pixels,
                                 patch_size=16, temporal_patch_size=2, merge_size=2,
                                 image_mean=list(CFG.image_mean), image_std=list(CFG.image_std))
    return proc(images=[f.numpy() for f in frames], return_tensors="pt")


def test_full_hd_frame_gives_320x576_and_180_tokens():
    assert resized_size(1080, 1920, CFG, VISION) == (320, 576)
    out = preprocess_images(_smooth_frames(2, 1080, 1920), CFG, VISION)
    assert out.image_grid_thw.tolist() == [[1, 20, 36]] * 2
    assert out.tokens_per_image == [180, 180]
    assert out.pixel_values.shape == (2 * 720, 3 * 2 * 16 * 16)
    assert out.pixel_values.dtype == torch.float32


def test_matches_hf_slow_processor_layout_and_values():
    frames = _smooth_frames(3, 1080, 1920, seed=1)
    ours = preprocess_images(frames, CFG, VISION)
    ref = _hf_slow(frames)
    assert torch.equal(ours.image_grid_thw, ref["image_grid_thw"])
    assert ours.pixel_values.shape == ref["pixel_values"].shape
    diff = (ours.pixel_values - ref["pixel_values"]).abs()
    # PIL vs torch uint8 bicubic-AA: at most one grey level (2/255 after normalisation).
    assert diff.max().item() <= 1.0 / 127.5 + 1e-6
    assert diff.mean().item() < 1e-3


def test_model_size_images_are_the_resized_frames_with_the_patch_grids():
    frames = _smooth_frames(3, 1080, 1920, seed=2)
    hwc = np.ascontiguousarray(frames.permute(0, 2, 3, 1).numpy())
    cl = torch.from_numpy(hwc).permute(0, 3, 1, 2)  # channels-last view, as the planner passes
    images = model_size_images(cl.reshape(3, 1, 3, 1080, 1920), CFG, VISION)
    patches = preprocess_images(frames, CFG, VISION)
    assert images.pixel_values.dtype == torch.uint8
    assert images.pixel_values.shape == (3, 3, 320, 576)
    assert images.pixel_values.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(images.pixel_values, resize_to_model(frames, CFG, VISION))
    assert torch.equal(images.image_grid_thw, patches.image_grid_thw)
    assert images.tokens_per_image == patches.tokens_per_image == [180] * 3
    # The patches are these very pixels, normalised and put in Qwen2-VL order.
    again = preprocess_images(images.pixel_values, CFG, VISION)
    assert torch.equal(again.pixel_values, patches.pixel_values)


def test_patch_order_follows_qwen2vl():
    """Pixels encode their coordinates; check where one pixel lands without any resize."""
    h, w = 320, 576  # already a valid size: no resize
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    img = torch.stack([yy % 256, xx % 256, (yy // 256) * 16 + xx // 256]).to(torch.uint8)
    out = preprocess_images(img[None], CFG, VISION)
    vals = ((out.pixel_values * 127.5) + 127.5).round().to(torch.int64)  # back to uint8 values
    y, x = 37, 101  # patch row 2, col 6 -> merge block (1, 3), inside-block (0, 0)
    patch = (1 * 18 + 3) * 4 + 0 * 2 + 0  # blocks row-major over (gh/m, gw/m), then (m, m)
    inner = (y % 16) * 16 + (x % 16)
    # D = (channel, time, py, px): channel 0 holds y, channel 1 holds x; both time copies equal.
    assert vals[patch, 0 * 512 + 0 * 256 + inner].item() == y
    assert vals[patch, 0 * 512 + 1 * 256 + inner].item() == y
    assert vals[patch, 1 * 512 + 0 * 256 + inner].item() == x


def test_channels_last_input_gives_identical_output():
    frames = _smooth_frames(2, 540, 960, seed=2)
    hwc = np.ascontiguousarray(frames.permute(0, 2, 3, 1).numpy())
    cl = torch.from_numpy(hwc).permute(0, 3, 1, 2)  # channels-last strides, no copy
    a = preprocess_images(frames, CFG, VISION)
    b = preprocess_images(cl, CFG, VISION)
    assert torch.equal(a.pixel_values, b.pixel_values)


def test_camera_frame_dims_flatten_camera_major():
    frames = _smooth_frames(4, 320, 576, seed=3)
    flat = preprocess_images(frames, CFG, VISION)
    nested = preprocess_images(frames.reshape(2, 2, 3, 320, 576), CFG, VISION)
    assert torch.equal(flat.pixel_values, nested.pixel_values)
    assert nested.num_images == 4


def test_rejects_float_and_hwc_input():
    with pytest.raises(ValueError, match="uint8"):
        preprocess_images(torch.zeros(1, 3, 64, 64), CFG, VISION)
    with pytest.raises(ValueError, match="uint8"):
        preprocess_images(torch.zeros(1, 64, 64, 3, dtype=torch.uint8), CFG, VISION)


def test_image_inputs_validates_patch_count():
    with pytest.raises(ValueError, match=r"pixel_values: expected \(720, D\) patches"):
        ImageInputs(pixel_values=torch.zeros(10, 1536),
                    image_grid_thw=torch.tensor([[1, 20, 36]]), merge_size=2)


@pytest.mark.parametrize("images, grid", [
    (torch.zeros(1, 3, 320, 576), [[1, 20, 36]]),  # float, not uint8
    (torch.zeros(2, 3, 320, 576, dtype=torch.uint8), [[1, 20, 36]]),  # 2 images, 1 grid row
    (torch.zeros(1, 3, 320, 576, dtype=torch.uint8), [[1, 20, 35]]),  # 576 / 35 not whole
    (torch.zeros(1, 3, 320, 576, dtype=torch.uint8), [[1, 10, 36]]),  # 32 px rows, 16 px cols
    (torch.zeros(1, 3, 320, 576, dtype=torch.uint8), [[2, 20, 36]]),  # a video grid
    (torch.zeros(2, 3, 320, 576, dtype=torch.uint8), [[1, 20, 36], [1, 10, 18]]),
])
def test_image_inputs_validates_images_against_the_grids(images, grid):
    with pytest.raises(ValueError, match="do not fit image_grid_thw"):
        ImageInputs(pixel_values=images, image_grid_thw=torch.tensor(grid), merge_size=2)
