"""The ray executor on a local Ray instance (2 CPUs and 2 declared GPUs that do not exist), started once."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crosstask import api
from crosstask.errors import CrosstaskError
from crosstask.store import Store

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def settings(tiny_model_dir) -> dict:
    return {
        "name": "tiny-ray",
        "base_model": str(tiny_model_dir),
        "precision": "fp32",
        "sources": ["sentiment_binary", {"task": "nli", "name": "nli_noisy", "noise": 0.5}],
        "targets": ["sentiment_binary", {"task": "arithmetic_large", "examples": 12}],
        "train_examples": 8,
        "eval_examples": 6,
        "lora": {"r": 2, "alpha": 4, "batch_size": 4, "max_length": 128, "lr": 0.05, "epochs": 2,
                 "min_steps": None},
        "eval": {"batch_size": 2, "bootstrap_resamples": 100},
    }


@pytest.fixture(scope="module")
def local_run(settings, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("local") / "run"
    api.run(settings, out_dir=run_dir, progress=False)
    return run_dir


def _assert_same_results(run_dir: Path, reference: Path) -> None:
    pd.testing.assert_frame_equal(pd.read_csv(run_dir / "matrix.csv"), pd.read_csv(reference / "matrix.csv"))
    ours, theirs = api.load_items(run_dir), api.load_items(reference)
    assert (ours["prediction"] == theirs["prediction"]).all() and (ours["generated"].fillna("") ==
                                                                   theirs["generated"].fillna("")).all()
    for mine, other in zip(ours["logliks"], theirs["logliks"]):
        if isinstance(mine, dict):  # one torch thread per Ray worker: fp32 sums may differ in the last bits
            assert np.allclose(list(mine.values()), list(other.values()), atol=1e-4)


def _cells_stored_once(run_dir: Path) -> None:
    store = Store(run_dir / "results.sqlite")
    cells, items = store.cells(), store.items()
    assert len(cells) == 3 * 2 and not cells.duplicated(["model", "target"]).any()
    sizes = items.groupby(["model", "target"]).size()
    assert sizes.to_dict() == cells.set_index(["model", "target"])["n_items"].to_dict()
    assert not items.duplicated(["model", "target", "item"]).any()


def test_ray_gives_the_local_matrix(cluster, settings, local_run, tmp_path):
    run_dir = tmp_path / "run"
    api.run(settings, out_dir=run_dir, progress=False, executor="ray")
    _assert_same_results(run_dir, local_run)
    _cells_stored_once(run_dir)
    metrics = [json.loads(text) for text in Store(run_dir / "results.sqlite").adapters()["metrics"]]
    assert all(entry["ray"]["resources"].get("CPU") == 1 for entry in metrics)  # the default request
    started = time.perf_counter()
    api.run(settings, out_dir=run_dir, progress=False, executor="ray")  # resumes: nothing to do
    assert time.perf_counter() - started < 30


def _busy_processes(title: str) -> list[int]:
    """Ray names a worker process after what it runs: "ray::_run_task", "ray::_EvalActor.run"."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if (proc / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace").startswith(title):
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def test_killed_workers_are_retried_and_every_cell_is_stored_once(cluster, settings, local_run, tmp_path):
    run_dir, failures, killed = tmp_path / "run", [], []

    def driver():
        try:
            api.run(settings, out_dir=run_dir, progress=False, executor="ray")
        except BaseException as error:  # noqa: BLE001  (reported by the assertion below)
            failures.append(error)

    thread = threading.Thread(target=driver)
    thread.start()
    deadline = time.time() + 240
    wanted = ["ray::_run_task", "ray::_EvalActor.run"]  # a training task, then an evaluation actor, mid-job
    while wanted and thread.is_alive() and time.time() < deadline:
        for pid in _busy_processes(wanted[0])[:1]:
            os.kill(pid, signal.SIGKILL)
            killed.append(wanted.pop(0))
        time.sleep(0.02)
    thread.join(timeout=300)
    assert not failures, failures
    assert killed == ["ray::_run_task", "ray::_EvalActor.run"], f"only killed {killed}: the jobs ended first"
    _cells_stored_once(run_dir)
    _assert_same_results(run_dir, local_run)


def test_scheduling_honours_declared_resources_and_adapters_can_travel_as_bytes(cluster, settings, local_run,
                                                                               tmp_path):
    run_dir = tmp_path / "run"
    demanding = settings | {"resources": {"train": {"num_cpus": 1, "num_gpus": 2}, "eval": {"num_gpus": 1}},
                            "executor": {"name": "ray", "shared_storage": False}}
    api.run(demanding, out_dir=run_dir, progress=False)
    _assert_same_results(run_dir, local_run)
    placements = [json.loads(text)["ray"] for text in Store(run_dir / "results.sqlite").adapters()["metrics"]]
    assert all(placement["resources"].get("GPU") == 2 and len(placement["gpu_ids"]) == 2 for placement in placements)
    first, second = sorted(placements, key=lambda placement: placement["started"])
    assert first["finished"] <= second["started"]  # both want every GPU there is: never at the same time

    fresh = tmp_path / "fresh"
    impossible = settings | {"resources": {"train": {"num_gpus": 3}}, "executor": "ray"}
    with pytest.raises(CrosstaskError, match=r"resources.train asks for .*GPU 3.* no node of the Ray cluster"):
        api.run(impossible, out_dir=fresh, progress=False)
    assert not fresh.exists()


def test_head_patterns_on_ray_equal_the_local_ones(cluster, local_run, tmp_path):
    from crosstask.executors.ray import RayExecutor
    from crosstask.heads.run import compute_run_patterns

    on_ray, here = tmp_path / "ray", tmp_path / "local"
    shutil.copytree(local_run, on_ray)
    shutil.copytree(local_run, here)
    remote = compute_run_patterns(on_ray, n_items=4, batch_size=4, executor=RayExecutor())
    local = compute_run_patterns(here, n_items=4, batch_size=4)
    assert remote.computed.all() and len(remote) == 3 * 2
    for ours, theirs in zip(remote.itertuples(), local.itertuples()):
        np.testing.assert_allclose(np.load(ours.npy), np.load(theirs.npy), rtol=1e-4, atol=1e-7)
