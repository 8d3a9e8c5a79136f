"""The config.json our tools write stays loadable by the reference's own Hydra-based loader.

The reference builds each Alpamayo part with `hydra.utils.instantiate(section, **extra)`, which
passes every key of a `_target_` section to that class's constructor. The reference package is
not installable here, so stand-ins with the reference classes' documented constructor signatures
(the facts of NVlabs/alpamayo's `alpamayo_r1` package, nothing else) are put on `sys.path` under
the same module paths, and real Hydra instantiates every section of a written config.json with
the extra arguments the reference passes.
"""

from __future__ import annotations

import json
import math
import sys
import textwrap

import hydra.utils
import pytest
import torch
from transformers import AutoTokenizer

from alpamayo_core.io.config_io import to_released_json
from alpamayo_core.model.config import preset

#: module path -> source of a stand-in with the reference class's constructor signature.
_STAND_INS = {
    "alpamayo_r1/models/action_in_proj.py": """
        class PerWaypointActionInProjV2:
            def __init__(self, in_dims, out_dim, num_enc_layers=4, hidden_size=1024,
                         max_freq=100.0, num_fourier_feats=20):
                self.kwargs = dict(locals())
        """,
    "alpamayo_r1/action_space/unicycle_accel_curvature.py": """
        class UnicycleAccelCurvatureActionSpace:
            def __init__(self, accel_mean=0.0, accel_std=1.0, curvature_mean=0.0,
                         curvature_std=1.0, accel_bounds=(-9.8, 9.8),
                         curvature_bounds=(-0.2, 0.2), dt=0.1, n_waypoints=64,
                         theta_lambda=1e-6, theta_ridge=1e-8, v_lambda=1e-6, v_ridge=1e-4,
                         a_lambda=1e-4, a_ridge=1e-4, kappa_lambda=1e-4, kappa_ridge=1e-4):
                self.kwargs = dict(locals())

            def get_action_space_dims(self):
                return (self.kwargs["n_waypoints"], 2)
        """,
    "alpamayo_r1/diffusion/flow_matching.py": """
        class FlowMatching:
            # FlowMatching(int_method, num_inference_steps, *args, **kwargs) forwards the rest
            # to BaseDiffusion(x_dims): any other key is a TypeError there.
            def __init__(self, x_dims, int_method="euler", num_inference_steps=10):
                self.kwargs = dict(locals())
        """,
    "alpamayo_r1/models/delta_tokenizer.py": """
        import math

        class DeltaTrajectoryTokenizer:
            def __init__(self, ego_xyz_min=(-4, -4, -10), ego_xyz_max=(4, 4, 10),
                         ego_yaw_min=-math.pi, ego_yaw_max=math.pi, num_bins=1000,
                         predict_yaw=False, load_weights=False):
                self.kwargs = dict(locals())
        """,
    "alpamayo_r1/action_space/discrete_action_space.py": """
        import hydra.utils

        class DiscreteTrajectoryTokenizer:
            def __init__(self, action_space_cfg, dims_min, dims_max, num_bins, **kwargs):
                self.action_space = hydra.utils.instantiate(action_space_cfg)
                dims = self.action_space.get_action_space_dims()
                assert len(dims_min) == len(dims_max) == dims[-1]
                self.kwargs = dict(locals())
        """,
}


@pytest.fixture
def reference_package(tmp_path, monkeypatch):
    for rel, source in _STAND_INS.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in [m for m in sys.modules if m.split(".")[0] == "alpamayo_r1"]:
        del sys.modules[name]  # the next test imports its own tmp_path copy


def _instantiate_like_the_reference(raw: dict) -> dict:
    """What `AlpamayoR1.__init__` of the reference instantiates, with its extra arguments."""
    hidden = raw["expert_cfg"]["hidden_size"]
    space = hydra.utils.instantiate(raw["action_space_cfg"])
    dims = space.get_action_space_dims()
    return {
        "action_space": space,
        "diffusion": hydra.utils.instantiate(raw["diffusion_cfg"], x_dims=dims),
        "action_in_proj": hydra.utils.instantiate(raw["action_in_proj_cfg"], in_dims=dims,
                                                  out_dim=hidden),
        "action_out_proj": hydra.utils.instantiate(raw["action_out_proj_cfg"],
                                                   in_features=hidden, out_features=dims[-1]),
        "hist_traj_tokenizer": hydra.utils.instantiate(raw["hist_traj_tokenizer_cfg"]),
        "traj_tokenizer": hydra.utils.instantiate(raw["traj_tokenizer_cfg"],
                                                  load_weights=False),
    }


@pytest.mark.usefixtures("reference_package")
def test_released_preset_config_instantiates_with_hydra():
    cfg = preset("alpamayo-r1-10b")
    parts = _instantiate_like_the_reference(to_released_json(cfg))
    assert parts["action_space"].kwargs["accel_std"] == cfg.action_space.accel_std
    assert parts["action_space"].get_action_space_dims() == (64, 2)
    assert parts["diffusion"].kwargs["num_inference_steps"] == 10
    assert parts["action_in_proj"].kwargs["hidden_size"] == 512
    assert isinstance(parts["action_out_proj"], torch.nn.Linear)
    assert parts["action_out_proj"].weight.shape == (2, 2048)
    hist = parts["hist_traj_tokenizer"].kwargs
    assert list(hist["ego_xyz_min"]) == [-4, -4, -10] and hist["num_bins"] == 1000
    assert hist["predict_yaw"] is False and hist["ego_yaw_max"] == math.pi
    traj = parts["traj_tokenizer"]
    assert traj.kwargs["num_bins"] == 3000 and list(traj.kwargs["dims_min"]) == [-10, -10]
    assert traj.action_space.kwargs["accel_mean"] == cfg.action_space.accel_mean


@pytest.mark.usefixtures("reference_package")
def test_tiny_folder_config_instantiates_with_hydra(tiny_model_dir):
    raw = json.loads((tiny_model_dir / "config.json").read_text())
    parts = _instantiate_like_the_reference(raw)
    assert parts["action_out_proj"].in_features == raw["expert_cfg"]["hidden_size"]
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir), local_files_only=True)
    assert raw["traj_token_start_idx"] == tokenizer.convert_tokens_to_ids("<i0>")
