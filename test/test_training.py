"""Training: the objective's pieces, the loop on a real (small) model, reproducibility, resume,
freezing, and that a trained checkpoint saved in the released layout plans exactly as the
trained model in memory."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from train_helpers import demo_model, drive_samples

from alpamayo_core.inference.plan import PlanInputs
from alpamayo_core.inference.planner import Planner
from alpamayo_core.inference.reasoning import SamplingConfig
from alpamayo_core.io.model_io import LoadedModel
from alpamayo_core.training.config import TrainConfig
from alpamayo_core.training.objective import StageThreeObjective, sample_times
from alpamayo_core.training.sample import assistant_text, encode, fit_actions
from alpamayo_core.training.trainer import Trainer, batch_indices

SHORT = TrainConfig(steps=2, batch_size=2, lr=3e-3, warmup_steps=0, flow_draws=2,
                    val_every=100, checkpoint_every=100, log_every=1)


@pytest.fixture(scope="module")
def samples():
    return drive_samples(count=4)


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_time_sampling_is_the_references_beta():
    t = sample_times(200_000, torch.Generator().manual_seed(0))
    assert float(t.min()) >= 0.0 and float(t.max()) < 0.999
    # t = 0.999 (1 - b), b ~ Beta(1.5, 1): E[t] = 0.999 * 0.4, P(t < 0.5) = 1 - (1 - 0.5/0.999)^1.5
    assert float(t.mean()) == pytest.approx(0.999 * 0.4, abs=3e-3)
    assert float((t < 0.5).float().mean()) == pytest.approx(1 - (1 - 0.5 / 0.999) ** 1.5,
                                                            abs=3e-3)


def test_config_names_the_bad_field():
    with pytest.raises(ValueError, match="TrainConfig.batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="TrainConfig.freeze"):
        TrainConfig(freeze=("decoder",))


def test_batches_cover_every_sample_each_epoch():
    seen = batch_indices(0, 10, 5, seed=3) + batch_indices(1, 10, 5, seed=3)
    assert sorted(seen) == list(range(10))
    assert batch_indices(0, 10, 5, seed=3) != batch_indices(0, 10, 5, seed=4)


def test_encoding_matches_the_assistant_turn_and_the_action_labels(samples):
    model, tokenizer = demo_model()
    encoded = encode(samples[0], model, tokenizer)
    text = tokenizer.decode(encoded.reasoning_ids.tolist(), skip_special_tokens=False)
    assert text == assistant_text(samples[0])
    assert text.endswith("<|meta_action_end|><|traj_future_start|>")
    assert encoded.prompt.input_ids[0, -1].item() == model.token_ids.cot_start
    # the labels integrate back to the future they were fitted to (unicycle round trip)
    s = samples[0]
    actions = fit_actions(model, [s])
    traj = model.action_space.action_to_traj(
        actions, torch.as_tensor(s.history_xyz_m[None], dtype=torch.float32),
        torch.as_tensor(s.history_rot[None], dtype=torch.float32))
    error = np.linalg.norm(traj.xyz[0, :, :2].numpy() - s.future_xyz_m[:, :2], axis=-1)
    assert error.max() < 0.3


def test_a_few_steps_reduce_the_loss_on_a_fixed_batch(samples, tmp_path):
    model, tokenizer = demo_model()
    cfg = dataclasses.replace(SHORT, steps=8, batch_size=4, lr=5e-3)
    trainer = Trainer(model, tokenizer, samples, [], cfg, tmp_path)
    batch = trainer.encoded(list(range(4)))
    objective = StageThreeObjective(model, flow_draws=2)
    with torch.no_grad():
        before = objective(batch, seed=7, step=0)
    trainer.run()
    with torch.no_grad():
        after = objective(batch, seed=7, step=0)
    assert float(after.ce) < 0.7 * float(before.ce)
    assert float(after.flow) < float(before.flow)
    assert float(after.total) < 0.7 * float(before.total)
    rows = (tmp_path / "losses.csv").read_text().splitlines()
    assert rows[0].startswith("step,lr,loss,ce,flow") and len(rows) == 1 + 8


def test_same_seed_gives_bit_identical_weights(samples, tmp_path):
    runs = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        model, tokenizer = demo_model(seed=0)
        cfg = dataclasses.replace(SHORT, seed=seed)
        Trainer(model, tokenizer, samples, [], cfg, tmp_path / name).run()
        runs.append(_weights(model))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not all(torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


def test_resume_continues_exactly(samples, tmp_path):
    cfg = dataclasses.replace(SHORT, steps=3)
    model, tokenizer = demo_model()
    Trainer(model, tokenizer, samples, [], cfg, tmp_path / "straight").run()
    straight = _weights(model)
    model, tokenizer = demo_model()
    interrupted = Trainer(model, tokenizer, samples, [], cfg, tmp_path / "resumed")
    interrupted.train_step()
    interrupted.save_checkpoint(tmp_path / "resumed" / "checkpoint")
    model, tokenizer = demo_model(seed=5)  # other weights: the checkpoint must replace them
    resumed = Trainer(model, tokenizer, samples, [], cfg, tmp_path / "resumed")
    resumed.run(resume=True)
    assert resumed.step == 3
    assert all(torch.equal(straight[k], v) for k, v in _weights(model).items())


def test_freezing_the_vlm_trains_the_expert_only(samples, tmp_path):
    model, tokenizer = demo_model()
    before = _weights(model)
    Trainer(model, tokenizer, samples, [], dataclasses.replace(SHORT, freeze=("vlm",)),
            tmp_path).run()
    after = _weights(model)
    vlm = [k for k in before if k.startswith("vlm.")]
    expert = [k for k in before if k.startswith("expert.")]
    assert all(torch.equal(before[k], after[k]) for k in vlm)
    assert not all(torch.equal(before[k], after[k]) for k in expert)


def test_unlabelled_samples_train_the_trajectory_only():
    model, tokenizer = demo_model()
    unlabelled = drive_samples(count=2, labelled=False)
    encoded = [encode(s, model, tokenizer) for s in unlabelled]
    losses = StageThreeObjective(model, flow_draws=2)(encoded, seed=0, step=0)
    losses.total.backward()
    assert float(losses.ce) == 0.0 and float(losses.flow) > 0.0
    assert model.vlm.lm_head.weight.grad is None  # the text head got no gradient
    assert model.expert.layers[0].mlp.down_proj.weight.grad.abs().sum() > 0


def test_trained_checkpoint_reproduces_its_plans(samples, tmp_path):
    model, tokenizer = demo_model()
    result = Trainer(model, tokenizer, samples, [], SHORT, tmp_path).run()
    model.eval()
    in_memory = LoadedModel(model=model, tokenizer=tokenizer, cfg=model.cfg,
                            token_ids=model.token_ids, model_id="in-memory")
    sampling = SamplingConfig(num_traj_samples=2, max_new_tokens=24)
    planners = [Planner(in_memory, sampling=sampling, backend="torch"),
                Planner.from_pretrained(result.model_dir, sampling=sampling, backend="torch")]
    s = samples[1]
    inputs = PlanInputs(s.images_rgb, s.history_xyz_m, s.history_rot, t0_ns=0)
    plans = [planner.plan(inputs, seed=3) for planner in planners]
    assert np.array_equal(plans[0].xyz_m, plans[1].xyz_m)
    assert plans[0].cot == plans[1].cot and plans[0].num_generated_tokens > 0


def test_labels_are_fitted_forward_only_unless_told_otherwise(samples, tmp_path):
    """A stopped car whose history creeps back 0.3 m/s: the default labels hold it still
    (what a forward-only planner then integrates in place); reference labels accelerate to
    cancel the negative start speed."""
    model, tokenizer = demo_model()
    creep = np.zeros((16, 3))
    creep[:, 0] = 0.3 * 0.1 * np.arange(15, -1, -1)
    standstill = dataclasses.replace(samples[0], history_xyz_m=creep,
                                     history_rot=np.repeat(np.eye(3)[None], 16, 0),
                                     future_xyz_m=np.zeros((64, 3)),
                                     future_rot=np.repeat(np.eye(3)[None], 64, 0))
    assert SHORT.forward_only
    default = Trainer(model, tokenizer, [standstill], [], SHORT, tmp_path / "a").train_actions
    reference = Trainer(model, tokenizer, [standstill], [],
                        dataclasses.replace(SHORT, forward_only=False),
                        tmp_path / "b").train_actions
    physical = model.action_space.denormalize  # -> (..., 2) accel m/s^2, curvature 1/m
    assert physical(default)[..., 0].abs().max() < 1e-3
    assert physical(reference)[0, 0, 0] > 1.0
