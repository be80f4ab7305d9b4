"""Tracking to a real `mlflow server` started here (its own SQLite backend and artifact folder):
what a run logs, read back through the client, and a server killed mid-run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _servers import MlflowServer, free_port

from cnnspec.cli import main
from cnnspec.spec import loads_spec
from cnnspec.track import content

ROOT = Path(__file__).resolve().parent.parent
LENET = str(ROOT / "specs" / "lenet5.yaml")
SHORT = ["--set", "train.steps_per_epoch=5", "--quiet"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = MlflowServer(tmp_path_factory.mktemp("mlflow")).start()
    yield srv
    srv.stop()


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _only_run(client, experiment: str):
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment}"
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return runs[0]


@pytest.mark.slow
def test_a_tracked_run_logs_spec_analysis_data_metrics_and_files(server, tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = ["train", LENET, "--epochs", "2", "--out", str(run_dir), "--track", server.uri]
    assert main([*args, "--set", "train.track.mlflow.experiment=t1", *SHORT]) == 0
    printed = capsys.readouterr()
    assert "warning: tracking" not in printed.err
    assert "View run" not in printed.out  # MLflow's own lines, from the sending thread
    client = _client(server.uri)
    run = _only_run(client, "t1")
    assert run.info.status == "FINISHED"
    p, m = run.data.params, run.data.metrics
    spec = loads_spec(Path(LENET).read_text(), LENET, ["train.epochs=2", "train.steps_per_epoch=5"])
    assert p["spec_hash"] == content.spec_hash(spec.source_data)
    assert p["spec.train.epochs"] == "2" and p["spec.layers.0.conv"] == "5x5, 6, s=1, p=0, tanh"
    assert "spec.train.track.mlflow.uri" not in p  # where it was sent is not what it was
    assert p["analysis.params"] == "61706" and p["analysis.macs"] == "416520"
    assert int(p["analysis.memory_bytes"]) > 61706 * 4
    assert p["data.source"] == "digits" and p["data.kind"] == "builtin"
    assert p["hardware.device"] == "CPU" and p["hardware.precision"] == "float32"
    # per-epoch metrics with the epoch as step, and the final ones from metrics.json
    history = client.get_metric_history(run.info.run_id, "val_accuracy")
    assert [h.step for h in history] == [1, 2]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert history[-1].value == pytest.approx(metrics["val"]["accuracy"], abs=1e-6)
    assert m["final_test_accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    assert m["images_per_s"] == pytest.approx(metrics["images_per_s"])
    # the files: spec, run files, plots, model (downloaded back and compared)
    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"spec.yaml", "run", "plots", "model"} <= files
    got = client.download_artifacts(run.info.run_id, "run/metrics.json", str(tmp_path))
    assert json.loads(Path(got).read_text()) == metrics
    model = client.download_artifacts(run.info.run_id, "model/model.keras", str(tmp_path))
    assert Path(model).read_bytes() == (run_dir / "model.keras").read_bytes()
    assert [a.path for a in client.list_artifacts(run.info.run_id, "plots")] == ["plots/curves.png"]
    # --resume continues the same MLflow run (track.json names it)
    record = json.loads((run_dir / "track.json").read_text())
    assert record["run_id"] == run.info.run_id and record["uri"] == server.uri
    # the sending thread's CPU, split: parameters and metrics while training, then the files
    cpu = record["sender_cpu_s"]
    assert set(cpu) == {"training", "end"} and cpu["training"] > 0 and cpu["end"] > 0, cpu
    assert main(["train", "--resume", str(run_dir), "--epochs", "3", "--quiet"]) == 0
    again = _only_run(client, "t1")
    assert again.info.run_id == run.info.run_id and again.info.status == "FINISHED"
    steps = [h.step for h in client.get_metric_history(run.info.run_id, "val_accuracy")]
    assert steps == [1, 2, 3]


SEARCH_SPEC = """\
name: tracked_search
input: [8, 8, 1]
layers:
  - conv: 3x3, 8, p=same, relu
  - maxpool: 2x2
  - flatten
  - dense: 10, softmax
train:
  data: digits
  epochs: 1
  batch_size: 64
search:
  trials: 3
  objective: val_accuracy
  budget: {max_params: 1.0e4}
  space:
    layers.0.conv: ["3x3, 8, p=same, relu", "3x3, 600, p=same, relu"]
    train.optimizer.adam.lr: {loguniform: [1.0e-3, 1.0e-2]}
"""


@pytest.mark.slow
def test_a_tracked_search_is_a_parent_run_with_a_child_per_trained_trial(server, tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(SEARCH_SPEC)
    out = tmp_path / "out"
    args = ["search", str(spec), "--out", str(out), "--set"]
    args += [f"train.track={{mlflow: {{uri: '{server.uri}', experiment: ts}}}}"]
    assert main(args) == 0
    client = _client(server.uri)
    exp = client.get_experiment_by_name("ts")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1, [r.info.run_name for r in runs]
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.data.params["search.objective"] == (
        "val_accuracy"
    )
    with open(out / "search.csv", newline="") as fh:
        import csv

        rows = list(csv.DictReader(fh))
    trained = sorted(int(r["number"]) for r in rows if r["state"] == "COMPLETE")
    # one child per trained trial (over-budget ones are pruned before any training or tracking)
    assert trained and sorted(int(r.info.run_name.split()[1]) for r in children) == trained
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    best = max(float(r["value"]) for r in rows if r["state"] == "COMPLETE")
    assert parent.data.metrics["best_val_accuracy"] == pytest.approx(best)
    files = {a.path for a in client.list_artifacts(parent.info.run_id, "search")}
    assert {"search/search.csv", "search/best.yaml"} <= files


@pytest.mark.slow
def test_a_two_worker_run_is_one_mlflow_run_with_the_chiefs_history(server, tmp_path):
    """The step loop (multi-worker) logs each epoch through the run's lifecycle, chief only:
    one MLflow run whose per-epoch metrics are history.csv (it used to log none, and the other
    worker opened a second, empty run)."""
    from cnnspec.train.rundir import read_history

    workers = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    runs = [tmp_path / "chief", tmp_path / "worker1"]
    procs = []
    for i in range(2):
        cmd = [sys.executable, "-m", "cnnspec.cli", "train", LENET, "--epochs", "2", "--out"]
        cmd += [str(runs[i]), "--track", server.uri, "--set", "train.track.mlflow.experiment=t4"]
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_CONFIG": json.dumps(tf_config)}
        env["CNNSPEC_WORKER_TIMEOUT"] = "180"
        procs.append(subprocess.Popen([*cmd, *SHORT], env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT))  # fmt: skip
    outs = []
    for proc in procs:
        try:
            outs.append(proc.communicate(timeout=600)[0])
        except subprocess.TimeoutExpired:
            proc.kill()
            outs.append(proc.communicate()[0] + "\n[killed by the test after its timeout]")
    assert [p.returncode for p in procs] == [0, 0], [o[-3000:] for o in outs]
    client = _client(server.uri)
    run = _only_run(client, "t4")  # the chief's only
    assert run.info.status == "FINISHED"
    assert run.data.params["hardware.distribute"] == "multi_worker"
    history = read_history(runs[0] / "history.csv")
    assert [row["epoch"] for row in history] == [1, 2]
    names = set(history[0]) - {"epoch"}
    assert {"loss", "accuracy", "val_accuracy", "lr"} <= names
    for name in names:
        logged = client.get_metric_history(run.info.run_id, content.key(name))
        assert [(m.step, m.value) for m in logged] == [
            (row["epoch"], pytest.approx(row[name], rel=1e-9)) for row in history
        ], name


@pytest.mark.slow
def test_a_run_on_arrays_in_memory_logs_the_arrays_not_the_recipes_data(server, tmp_path):
    import numpy as np
    from sklearn.datasets import load_digits

    import cnnspec

    d = load_digits()
    x, y = (d.images * (255 / 16)).astype(np.uint8), d.target
    overrides = {"train.track.mlflow.experiment": "t3", "train.steps_per_epoch": 3}
    cnnspec.train(LENET, data=(x, y), out=tmp_path / "run", epochs=1, track=server.uri,
                  set=overrides, verbose=0)  # fmt: skip
    p = _only_run(_client(server.uri), "t3").data.params
    assert p["data.source"] == "arrays (x, y) of 1797x8x8 in memory"  # not the recipe's digits
    assert p["data.kind"] == "arrays" and "track.error" not in p
    assert (p["data.x_shape"], p["data.x_dtype"]) == ("1797x8x8", "uint8")
    assert (p["data.y_shape"], p["data.y_dtype"]) == ("1797", str(y.dtype))
    assert p["data.hash"] == content.memory_fingerprint((x.copy(), y.copy()))["data.hash"]
    x[0, 0, 0] ^= 1  # one bit of one pixel: another data set
    assert content.memory_fingerprint((x, y))["data.hash"] != p["data.hash"]


@pytest.mark.slow
def test_server_killed_mid_run_warns_once_and_the_run_finishes(server, tmp_path):
    """Last in this file: it kills the module's server."""
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "cnnspec.cli", "train", LENET, "--epochs", "6", "--out"]
    cmd += [str(run_dir), "--track", server.uri, "--set", "train.track.mlflow.experiment=t2"]
    cmd += ["--set", "train.steps_per_epoch=20", "--quiet"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    history = run_dir / "history.csv"
    deadline = time.time() + 300
    while not (history.exists() and len(history.read_text().splitlines()) >= 2):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline, "no epoch finished"
        time.sleep(0.05)
    server.stop()  # after epoch 1, before the rest of the run
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    warnings = [line for line in err.splitlines() if line.startswith("warning: tracking")]
    assert len(warnings) == 1, err[-3000:]
    assert server.uri in warnings[0] and "training goes on" in warnings[0]
    # nothing lost locally
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["epochs_done"] == 6
    assert len(history.read_text().splitlines()) == 7 and (run_dir / "model.keras").is_file()
    assert not (run_dir / "track.json").exists()  # the MLflow run never got its end


def test_track_section_is_validated_and_keys_fit_mlflow(tmp_path, capsys):
    text = Path(LENET).read_text()
    assert main(["validate", LENET, "--set", "train.track.mlfow.uri=http://x"]) == 2
    assert "did you mean 'mlflow'" in capsys.readouterr().err
    spec = loads_spec(text, LENET, ["train.track.mlflow.uri=http://x"])
    assert spec.train.track.mlflow.uri == "http://x" and spec.train.track.mlflow.experiment is None
    assert content.key("val_top[3]:x") == "val_top_3__x"
    params = content.spec_params(spec)
    assert (
        all(len(k) <= content.MAX_KEY for k in params)
        and "spec.train.track.mlflow.uri" not in params
    )


def test_data_fingerprint_follows_the_file_list(tmp_path):
    folder = tmp_path / "data"
    (folder / "cat").mkdir(parents=True)
    (folder / "cat" / "a.png").write_bytes(b"x" * 10)
    first = content.data_fingerprint(str(folder))
    assert first["data.kind"] == "folder" and first["data.files"] == "1"
    assert content.data_fingerprint(str(folder)) == first
    (folder / "cat" / "b.png").write_bytes(b"y")
    assert content.data_fingerprint(str(folder))["data.hash"] != first["data.hash"]
    npz = tmp_path / "d.npz"
    npz.write_bytes(b"abc")
    assert content.data_fingerprint(str(npz))["data.hash"] == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert content.data_fingerprint("digits") == {"data.kind": "builtin"}


def test_arrays_in_memory_are_fingerprinted_by_shape_dtype_and_content():
    import numpy as np

    x = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    y = np.array([0, 1])
    first = content.data_fingerprint((x, y))
    assert first["data.kind"] == "arrays" and first["data.x_shape"] == "2x3x4"
    assert (first["data.y_shape"], first["data.y_dtype"]) == ("2", str(y.dtype))
    assert content.data_fingerprint([x.copy(), y.copy()]) == first  # a list, copies: the same
    wide = np.zeros((2, 3, 8), np.uint8)
    wide[:, :, ::2] = x
    assert content.data_fingerprint((wide[:, :, ::2], y)) == first  # a strided view: the same
    for other in (x.reshape(2, 12), x.astype(np.int8), x[::-1]):  # same bytes or values
        assert content.data_fingerprint((other, y))["data.hash"] != first["data.hash"]
    names = content.data_fingerprint((x, np.array(["cat", "dog"], dtype=object)))
    assert names["data.kind"] == "arrays" and names["data.hash"] != first["data.hash"]
    assert (
        content.start_params(loads_spec(Path(LENET).read_text(), LENET), (x, y))["data.source"]
        == "arrays (x, y) of 2x3x4 in memory"
    )


@pytest.mark.slow
def test_a_broken_mlflow_install_warns_once_and_the_run_finishes(tmp_path):
    """mlflow found but failing to import (a broken install): one warning, training goes on."""
    fake = tmp_path / "site" / "mlflow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('protobuf is too old (a test)')\n")
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "cnnspec.cli", "train", LENET, "--epochs", "1", "--out"]
    cmd += [str(run_dir), "--track", "http://127.0.0.1:9", *SHORT]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(tmp_path / "site")}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning: tracking")]
    assert len(warnings) == 1 and "cannot import mlflow" in warnings[0], done.stderr[-3000:]
    assert json.loads((run_dir / "metrics.json").read_text())["epochs_done"] == 1
