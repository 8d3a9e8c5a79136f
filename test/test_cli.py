"""The core's command-line tools, run as a user would (in-process `main(argv)`)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from alpamayo_core.cli import plan as plan_cli
from alpamayo_core.cli import prepare as prepare_cli
from alpamayo_core.cli.make_tiny import make_tiny
from alpamayo_core.io.model_io import load_model


def test_plan_on_a_synthetic_scene_prints_and_writes_json(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "plan.json"
    rc = plan_cli.main(["--model", str(tiny_model_dir), "--synthetic", "straight",
                        "--max-tokens", "8", "--samples", "2", "--steps", "3",
                        "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "reasoning[1]" in text and "timings [ms]" in text
    saved = json.loads(out.read_text())
    assert np.asarray(saved["xyz_m"]).shape == (2, 64, 3)
    assert saved["selected"] in (0, 1)


def test_plan_from_image_files_and_history_csv(tiny_model_dir, tmp_path, capsys):
    import cv2

    rng = np.random.default_rng(0)
    paths = []
    for i in range(16):
        path = tmp_path / f"img{i:02d}.png"
        cv2.imwrite(str(path), rng.integers(0, 255, (64, 96, 3), dtype=np.uint8))
        paths.append(str(path))
    t = np.arange(16) * 0.1
    yaw0 = 0.7  # an arbitrary world heading: the CLI must rotate into the ego frame
    rows = np.stack([t, 5 * t * np.cos(yaw0), 5 * t * np.sin(yaw0), 0 * t,
                     np.full(16, yaw0)], 1)
    history = tmp_path / "history.csv"
    np.savetxt(history, rows, delimiter=",", header="t_s,x_m,y_m,z_m,yaw_rad", comments="")
    xyz, rot = plan_cli.read_history_csv(history)
    np.testing.assert_allclose(xyz[:, 0], 5 * (t - t[-1]), atol=1e-9)
    np.testing.assert_allclose(xyz[:, 1], 0, atol=1e-9)
    np.testing.assert_allclose(rot[-1], np.eye(3), atol=1e-12)
    rc = plan_cli.main(["--model", str(tiny_model_dir), "--images", *paths, "--history",
                        str(history), "--max-tokens", "4", "--steps", "2"])
    assert rc == 0 and "selected 0" in capsys.readouterr().out


def test_forward_only_flag_keeps_a_creeping_back_standstill_from_reversing(tiny_model_dir,
                                                                           tmp_path):
    import cv2

    paths = []
    for i in range(16):
        paths.append(str(tmp_path / f"img{i:02d}.png"))
        cv2.imwrite(paths[-1], np.full((64, 96, 3), 10 * i, dtype=np.uint8))
    t = np.arange(16) * 0.1
    rows = np.stack([t, -0.5 * t, 0 * t, 0 * t, 0 * t], 1)  # odometry creeping back 0.5 m/s
    history = tmp_path / "history.csv"
    np.savetxt(history, rows, delimiter=",", header="t_s,x_m,y_m,z_m,yaw_rad", comments="")
    first_x = {}
    for flags in ([], ["--forward-only"]):
        out = tmp_path / f"plan{len(flags)}.json"
        assert plan_cli.main(["--model", str(tiny_model_dir), "--images", *paths, "--history",
                              str(history), "--max-tokens", "4", "--steps", "2", "--samples",
                              "3", "--json", str(out), *flags]) == 0
        first_x[len(flags)] = np.asarray(json.loads(out.read_text())["xyz_m"])[:, 0, 0]
    assert (first_x[0] < 0).all()  # the reference starts at v0 = -0.5 m/s
    assert (first_x[1] >= 0).all()


def test_plan_rejects_a_wrong_image_count(tiny_model_dir, tmp_path):
    history = tmp_path / "h.csv"
    history.write_text("t_s,x_m,y_m,z_m,yaw_rad\n" + "0,0,0,0,0\n" * 16)
    with pytest.raises(ValueError, match="16 files"):
        plan_cli.main(["--model", str(tiny_model_dir), "--images", "a.png", "--history",
                       str(history)])


def test_prepare_builds_an_offline_folder_from_weights_and_a_base_tokenizer(tmp_path):
    """The released layout (weights + config, no tokenizer) + a base tokenizer folder."""
    from alpamayo_core.inputs.tiny_tokenizer import tiny_base_tokenizer

    src = make_tiny(tmp_path / "src")
    weights = tmp_path / "weights"
    weights.mkdir()
    for p in src.iterdir():
        if p.name.startswith("model") or p.name == "config.json":
            (weights / p.name).write_bytes(p.read_bytes())
    base = tmp_path / "base"
    tiny_base_tokenizer().save_pretrained(str(base))
    out = tmp_path / "prepared"
    rc = prepare_cli.main(["--weights", str(weights), "--base-processor", str(base),
                           "--out", str(out)])
    assert rc == 0
    assert all(p.is_symlink() for p in out.glob("model-*.safetensors"))
    assert load_model(out).model_id.split("@")[1] == load_model(src).model_id.split("@")[1]


def test_prepare_reports_a_wrong_base_tokenizer(tmp_path, capsys):
    from alpamayo_core.inputs.tiny_tokenizer import tiny_base_tokenizer

    src = make_tiny(tmp_path / "src")
    base = tmp_path / "base"
    tiny_base_tokenizer(vocab_size=300).save_pretrained(str(base))
    rc = prepare_cli.main(["--weights", str(src), "--base-processor", str(base),
                           "--out", str(tmp_path / "out")])
    assert rc == 2 and "wrong base tokenizer" in capsys.readouterr().err
