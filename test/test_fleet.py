"""Fleet evaluation: bag sets, the sequential and Ray engines (real local Ray, 2 workers), a
corrupt bag among good ones, comparison mode, and the HTML report in headless chromium.

Three short synthetic bags (480x270 JPEG) plus a corrupt copy; the tiny model; 2 samples.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import pytest
from rosproc import tiny_checkpoint

from alpamayo_core.sim.drive import SceneConfig, SyntheticDrive
from alpamayo_ros.tools.bag_io import BagWriteOptions, write_drive_bag
from alpamayo_ros.tools.fleet import bag_set

pytest.importorskip("alpamayo.msg", reason="build the interfaces: scripts/build_interfaces.sh")

SECONDS = 4.0
SCENES = (("straight", "straight", 1), ("curve_a", "curve_left", 2), ("curve_b", "curve_left", 3))
RANK_HORIZON_S = 1.0  # a 4 s bag scores no plan at 3 s


def _spec(model: Path, seed: int = 0, render: bool = True):
    from alpamayo_ros.node.params import NodeParams
    from alpamayo_ros.tools.evaluate import EvalOptions
    from alpamayo_ros.tools.fleet.worker import WorkerSpec

    params = NodeParams(model_dir=str(model), num_traj_samples=2, max_generation_tokens=8,
                        backend="torch", seed=seed)
    return WorkerSpec(EvalOptions(params, render=render, animation=False), threads=1)


def _options(ray=None):
    from alpamayo_ros.tools.fleet.aggregate import AggregateOptions
    from alpamayo_ros.tools.fleet.run import FleetOptions

    return FleetOptions(ray=ray, aggregate=AggregateOptions(rank_horizon_s=RANK_HORIZON_S,
                                                            worst_n=3), progress=False)


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    """bags/: three drives (two tagged curve_left by their metadata) and a corrupt one."""
    base = tmp_path_factory.mktemp("fleet")
    for name, kind, seed in SCENES:
        drive = SyntheticDrive(SceneConfig(kind=kind, seconds=SECONDS, width=480, height=270,
                                           seed=seed))
        write_drive_bag(drive, base / "bags" / name, BagWriteOptions(compressed=True))
    corrupt = base / "bags" / "broken"
    shutil.copytree(base / "bags" / "straight", corrupt)
    for mcap in corrupt.glob("*.mcap"):
        mcap.write_bytes(os.urandom(mcap.stat().st_size))  # same size, no MCAP inside
    (base / "bags" / "broken.tags.yaml").write_text("scene: damaged\n")
    return base / "bags", tiny_checkpoint(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def sequential(bags, tmp_path_factory):
    from alpamayo_ros.tools.fleet.run import evaluate_fleet

    folder, model = bags
    out = tmp_path_factory.mktemp("seq") / "out"
    return evaluate_fleet(bag_set.resolve(str(folder)), out, _spec(model), _options())


@pytest.fixture(scope="module")
def on_ray(bags, tmp_path_factory):
    from alpamayo_ros.tools.fleet.engines import RayOptions
    from alpamayo_ros.tools.fleet.run import evaluate_fleet

    folder, model = bags
    out = tmp_path_factory.mktemp("ray") / "out"
    return evaluate_fleet(bag_set.resolve(f"{folder}/*"), out, _spec(model),
                          _options(RayOptions("auto", workers=2)))


def test_bag_sets_from_folder_glob_and_list_file(bags, tmp_path):
    folder, _ = bags
    names = ["broken", "curve_a", "curve_b", "straight"]
    assert [e.name for e in bag_set.resolve(str(folder))] == names
    assert [e.name for e in bag_set.resolve(f"{folder}/curve_*")] == ["curve_a", "curve_b"]
    listing = tmp_path / "bags.txt"
    listing.write_text(f"# drives\n{folder}/straight\n\n{folder}/curve_b  # second\n")
    entries = bag_set.resolve(str(listing))
    assert [(e.name, e.scene) for e in entries] == [("straight", "straight"),
                                                    ("curve_b", "curve_left")]
    assert bag_set.scene_tag(folder / "broken") == "damaged", "the sidecar wins"
    assert bag_set.is_bag_set(str(folder)) and not bag_set.is_bag_set(str(folder / "straight"))
    (tmp_path / "other").mkdir()
    shutil.copytree(folder / "straight", tmp_path / "other" / "straight")
    twice = tmp_path / "twice.txt"
    twice.write_text(f"{folder}/straight\n{tmp_path}/other/straight\n")
    assert [e.name for e in bag_set.resolve(str(twice))] == ["straight_0", "straight_1"]
    with pytest.raises(ValueError, match="no rosbag2 folders"):
        bag_set.resolve(str(tmp_path / "other" / "straight" / "*.yaml"))


def test_ray_with_two_workers_gives_the_sequential_metrics(sequential, on_ray):
    assert on_ray.data["metrics"] == sequential.data["metrics"]

    def untimed(moments):  # latency is the clock's, the picture path the run's folder
        return [{k: v for k, v in m.items() if k not in ("latency_ms", "picture")}
                for m in moments]

    assert untimed(on_ray.data["moments"]) == untimed(sequential.data["moments"])
    assert len(sequential.data["moments"]) == 3
    for name in ("straight", "curve_a", "curve_b"):
        seq_plans = json.loads((sequential.out_dir / "bags" / name / "metrics.json").read_text())
        ray_plans = json.loads((on_ray.out_dir / "bags" / name / "metrics.json").read_text())
        assert seq_plans["plans"] and seq_plans["plans"] == ray_plans["plans"]
    overall = on_ray.data["metrics"]["overall"]
    assert overall["num_bags"] == 3 and overall["status_counts"]["OK"] > 0
    assert overall["summary"]["model"]["1s"]["num_scored"] > 0
    assert set(on_ray.data["metrics"]["scenes"]) == {"curve_left", "damaged", "straight"}
    assert on_ray.data["metrics"]["scenes"]["curve_left"]["num_bags"] == 2


def test_each_ray_worker_loads_the_model_once(sequential, on_ray):
    workers = [r.worker for r in on_ray.records]
    assert len(set(workers)) == 2, "two actors shared the four bags"
    assert max(workers.count(w) for w in set(workers)) >= 2, "an actor evaluated several bags"
    assert all(r.model_loads == 1 for r in on_ray.records if r.ok)
    assert f":{os.getpid()}" not in " ".join(workers), "bags ran in the actors, not here"
    assert {r.worker for r in sequential.records} == {f"{socket.gethostname()}:{os.getpid()}"}
    assert len({r.model_loads for r in sequential.records}) == 1, "no reload between bags"


def test_a_corrupt_bag_is_listed_with_its_error_and_the_others_finish(sequential, on_ray):
    for run in (sequential, on_ray):
        failed = run.data["metrics"]["failed"]
        assert list(failed) == ["broken"] and failed["broken"]
        assert run.data["meta"]["num_failed"] == 1 and run.data["meta"]["num_bags"] == 4
        bags_metrics = run.data["metrics"]["bags"]
        assert bags_metrics["broken"]["error"] == failed["broken"]
        for name in ("straight", "curve_a", "curve_b"):
            assert bags_metrics[name]["error"] is None
            assert bags_metrics[name]["summary"]["num_plans"] > 0
    html = on_ray.report_html.read_text()
    assert "broken" in html and on_ray.data["metrics"]["failed"]["broken"][:40] in html


def _metric_value(data: dict, key: str) -> float | int | None:
    """The fleet.json value a report cell names: group/method/horizon/field,
    group/status/NAME or group/latency/field (group: overall, scene:S, bag:B)."""
    group, *path = key.split("/")
    metrics, timing = data["metrics"], data["timing"]
    kind, _, name = group.partition(":")
    node = {"overall": metrics["overall"], "scene": metrics["scenes"].get(name),
            "bag": metrics["bags"].get(name)}[kind]
    if path[0] == "status":
        return node["status_counts"].get(path[1], 0)
    if path[0] == "latency":
        return (timing["overall"] if kind == "overall" else timing["scenes"][name])[path[1]]
    method, horizon, field = path
    return node["summary"][method][horizon][field]


def test_report_opens_in_headless_chromium_with_the_json_numbers(sequential, tmp_path):
    from browser import load_page

    report = sequential.report_html
    html = report.read_text(encoding="utf-8")
    assert "http://" not in html and "https://" not in html, "self-contained: no network"
    assert "<script" not in html
    page = load_page(report, tmp_path / "report.png")
    assert page.console == [], page.console
    assert page.broken_images == []
    data = json.loads(sequential.fleet_json.read_text())
    assert len(page.metrics) >= 4 * 6 * 4, "overall, 3 scenes (one failed) x horizons x fields"
    for key, shown in page.metrics.items():
        value = _metric_value(data, key)
        if value is None:
            assert shown == "-", key
        else:
            assert float(shown) == pytest.approx(value, abs=6e-4), key
    assert page.metrics["overall/model/1s/min_ade_m"] != "-"
    assert page.metrics["scene:curve_left/status/OK"] == str(
        data["metrics"]["scenes"]["curve_left"]["status_counts"]["OK"])
    # the worst moments: their pictures embedded, linked to the per-plan PNGs that exist
    assert html.count('alt="plan picture" src="data:image/jpeg;base64,') == 3
    for moment in data["moments"]:
        rel = Path(moment["picture"]).relative_to(report.parent).as_posix()
        assert f'href="{rel}"' in html and (report.parent / rel).is_file()
    shot = page.screenshot.read_bytes()
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 50_000


def test_the_browser_check_catches_console_errors(tmp_path):
    from browser import load_page

    bad = tmp_path / "bad.html"
    bad.write_text('<html><body><span data-metric="x">1.5</span><img alt="gone" src="gone.png">'
                   '<script>console.error("boom")</script></body></html>')
    page = load_page(bad, tmp_path / "bad.png")
    messages = " ".join(m for _, m in page.console)
    assert "boom" in messages and "gone.png" in messages
    assert page.metrics == {"x": "1.5"} and page.broken_images == ["gone"]


def test_comparison_of_two_parameter_sets(bags, tmp_path):
    from alpamayo_ros.cli.evaluate import main

    folder, model = bags
    listing = tmp_path / "two.txt"
    listing.write_text(f"{folder}/curve_a\n{folder}/straight\n")
    params_b = tmp_path / "b.yaml"
    params_b.write_text("alpamayo:\n  ros__parameters:\n    num_flow_steps: 2\n")
    out = tmp_path / "cmp"
    code = main([str(listing), "--model", str(model), "--out", str(out), "--samples", "2",
                 "--max-tokens", "8", "--backend", "torch", "--no-render", "--quiet",
                 "--compare-params-file", str(params_b), "--rank-horizon", "1", "--worst", "4"])
    assert code == 0
    data = json.loads((out / "compare.json").read_text())
    fleet_a = json.loads((out / "a" / "fleet.json").read_text())
    fleet_b = json.loads((out / "b" / "fleet.json").read_text())
    assert (fleet_a["meta"]["num_flow_steps"], fleet_b["meta"]["num_flow_steps"]) == (0, 2)
    side = data["side_by_side"]["overall"]
    assert side["a"] == fleet_a["metrics"]["overall"]
    assert side["b"] == fleet_b["metrics"]["overall"]
    diffs = data["differences"]
    assert diffs["num_matched"] >= 2 and len(diffs["moments"]) == min(4, diffs["num_matched"])
    sizes = [abs(d["delta_ade_m"]) for d in diffs["moments"]]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > 0
    for d in diffs["moments"]:
        assert (d["a"]["bag"], d["a"]["t0_ns"]) == (d["b"]["bag"], d["b"]["t0_ns"])
        assert d["delta_ade_m"] == pytest.approx(d["b"]["ade_m"] - d["a"]["ade_m"])
    page_html = (out / "report.html").read_text()
    assert 'href="a/report.html"' in page_html and (out / "a" / "report.html").is_file()
    from browser import load_page

    page = load_page(out / "report.html", tmp_path / "compare.png")
    assert page.console == [] and page.broken_images == []
    for run, summary in (("a", side["a"]["summary"]), ("b", side["b"]["summary"])):
        shown = page.metrics[f"overall/{run}/model/1s/min_ade_m"]
        assert float(shown) == pytest.approx(summary["model"]["1s"]["min_ade_m"], abs=6e-4)


def test_ray_workers_that_cannot_load_the_model_fail_the_bags_with_the_reason(bags, tmp_path):
    from alpamayo_ros.tools.fleet.engines import RayOptions, run_ray

    folder, _ = bags
    entries = bag_set.resolve(f"{folder}/[cs]*")  # curve_a, curve_b, straight
    done = []
    records = run_ray(entries, tmp_path, _spec(tmp_path / "no_model"),
                      RayOptions("auto", workers=2), done.append)
    assert [r.entry.name for r in records] == ["curve_a", "curve_b", "straight"]
    assert len(done) == 3 and not any(r.ok for r in records)
    died = [r for r in records if "no_model" in r.error]
    assert len(died) == 2 and all(r.error.startswith("ActorDiedError") for r in died)
    assert [r.error for r in records if r not in died] == ["no Ray worker left"]
