"""`cnnspec search` never loses or corrupts a search, and writes only where it may.

Fast: no test here trains a model (candidates are pruned by their budget, or fail on their data,
before anything is built).
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cnnspec.cli import main

# Every candidate has ~700 parameters: a budget of 10 prunes each one before it is built.
SPEC = """\
name: safe_search
input: [8, 8, 1]
layers:
  - conv: 3x3, 8, p=same, relu
  - maxpool: 2x2
  - flatten
  - dense: 10, softmax
train:
  data: {data}
  epochs: 1
  batch_size: 32
search:
  trials: 2
  objective: val_accuracy
  budget: {{max_params: {max_params}}}
  space:
    train.optimizer.adam.lr: {{loguniform: [1.0e-4, 1.0e-2]}}
"""


def _spec(tmp_path: Path, data: str = "digits", max_params: float = 10) -> Path:
    path = tmp_path / "safe.yaml"
    path.write_text(SPEC.format(data=data, max_params=max_params))
    return path


def _search(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["search", *args])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "internal error" not in err and "Traceback" not in err
    return lines[0]


# --- 14.2: the workers of a new search race to create its storage --------------------------------

CHILD = """\
import sys, time
from pathlib import Path
from cnnspec.search.study import Plan, open_study
from cnnspec.spec.search import SearchSpec
import optuna, sqlalchemy  # imported before the start signal: the children open together

out, storage, go, ready = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
plan = Plan(Path("x.yaml"), out, SearchSpec(space={"train.batch_size": [8, 16]}), "race",
            storage=storage)
ready.touch()
while not go.exists():
    time.sleep(0.002)
try:
    open_study(plan)
except BaseException as exc:
    print(f"{type(exc).__name__}: {exc}")
    sys.exit(1)
"""


def test_a_new_study_created_by_many_processes_at_once(tmp_path):
    """Before the fix, every round of 4 processes failed ("table studies already exists").

    Round 0: the workers of one search (one folder, one lock); round 1: processes with their
    own folders and one storage, as workers on several machines (the creation is retried).
    """
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    failures = []
    for round_, shared_folder in enumerate([True, False]):
        db = tmp_path / f"round{round_}" / "search.db"
        db.parent.mkdir()
        go = tmp_path / f"go{round_}"
        procs = []
        for i in range(4):
            out = db.parent if shared_folder else db.parent / f"machine{i}"
            out.mkdir(exist_ok=True)
            ready = tmp_path / f"ready{round_}-{i}"
            cmd = [sys.executable, str(script), str(out), f"sqlite:///{db}", str(go), str(ready)]
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
        # Start them together: once every child has imported Optuna and waits for the signal.
        while not all((tmp_path / f"ready{round_}-{i}").exists() for i in range(4)):
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            time.sleep(0.01)
        go.touch()
        for p in procs:
            out_text, _ = p.communicate(timeout=300)
            if p.returncode:
                failures.append((round_, out_text.strip()))
    assert not failures, failures


def test_storage_errors_hint_at_their_cause():
    from cnnspec.search.storage import storage_error

    locked = storage_error("sqlite:///x.db", RuntimeError("database is locked"))
    assert "run the command again" in str(locked) and "psycopg" not in str(locked)
    raced = storage_error("sqlite:///x.db", RuntimeError("table studies already exists"))
    assert "same moment" in str(raced)
    missing = storage_error(
        "postgresql://u:secret@h/db", ModuleNotFoundError("No module named 'psycopg'")
    )
    assert "psycopg[binary]" in str(missing) and "psycopg2" not in str(missing)
    assert "secret" not in str(missing)  # the password is never printed
    refused = storage_error("postgresql://u@h/db", RuntimeError("connection refused"))
    assert "server runs" in str(refused)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("foo://x/y", "unknown database kind 'foo'"),
        ("not a url", "not a database URL"),
        ("postgresql://user:pw@localhost:1/db", "pip install 'psycopg[binary]'"),
    ],
    ids=["kind", "malformed", "postgres-driver"],
)
def test_bad_storage_url_is_one_line_before_anything_runs(
    tmp_path, capsys, monkeypatch, url, expected
):
    # Python's own way to make a module not importable: the driver is missing, wherever it runs.
    monkeypatch.setitem(sys.modules, "psycopg", None)
    out = tmp_path / "out"
    code, _, err = _search(capsys, str(_spec(tmp_path)), "--out", str(out), "--storage", url)
    line = _one_line(err)
    assert code in (1, 2) and expected in line, line
    assert "psycopg2" not in line and ":pw@" not in line
    assert not out.exists()


def test_unreachable_postgres_is_one_line(tmp_path, capsys):
    pytest.importorskip("psycopg", reason="the postgres extra is not installed")
    url = "postgresql://user:secret@127.0.0.1:1/db"  # port 1: nothing listens
    code, _, err = _search(
        capsys, str(_spec(tmp_path)), "--out", str(tmp_path / "o"), "--storage", url
    )
    line = _one_line(err)
    assert code == 1 and "cannot connect to the database" in line, line
    assert "secret" not in line and "psycopg2" not in line


# --- 15.4: a search silently lost or wrong -------------------------------------------------------


@pytest.mark.parametrize("url", ["sqlite:///:memory:", "sqlite:///", "sqlite://"])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_in_memory_storage_is_refused(tmp_path, capsys, url, workers):
    out = tmp_path / "out"
    args = [str(_spec(tmp_path)), "--out", str(out), "--storage", url, "--workers", workers]
    code, _, err = _search(capsys, *args)
    line = _one_line(err)
    assert code == 2 and line.startswith("--storage: an in-memory database"), line
    assert not out.exists()


def test_a_search_whose_spec_changed_is_refused(tmp_path, capsys):
    """Before: best.yaml was rebuilt from the edited spec with the old values; a dimension that
    changed kind gave "internal error: ValueError"."""
    spec = _spec(tmp_path)
    out = tmp_path / "out"
    assert _search(capsys, str(spec), "--out", str(out))[0] == 1  # every trial over budget
    text = spec.read_text()
    edits = {
        "architecture": text.replace("conv: 3x3, 8,", "conv: 5x5, 8,"),
        "kind": text.replace("{loguniform: [1.0e-4, 1.0e-2]}", "[0.001, 0.01]"),
    }
    for what, edited in edits.items():
        spec.write_text(edited)
        code, _, err = _search(capsys, str(spec), "--out", str(out))
        line = _one_line(err)
        assert code == 1 and "was made by another search" in line, (what, line)
        assert "--out" in line  # the hint: a new folder
    # The budget and trial count may change: the search resumes (and still finds nothing).
    spec.write_text(text.replace("trials: 2", "trials: 3"))
    code, out_text, err = _search(capsys, str(spec), "--out", str(out))
    assert code == 1 and "no trial of the search completed" in err
    assert "3 trials: 0 complete, 3 pruned" in out_text
    # --fresh starts the edited search again (the old trials go), and it then resumes as usual.
    spec.write_text(edits["architecture"])
    code, out_text, err = _search(capsys, str(spec), "--out", str(out), "--fresh")
    assert code == 1 and "another search" not in err
    assert "2 trials: 0 complete, 2 pruned" in out_text
    code, out_text, err = _search(capsys, str(spec), "--out", str(out))
    assert code == 1 and "2 trials: 0 complete, 2 pruned" in out_text
    assert (out / ".cnnspec-search").is_file()


def test_nothing_succeeded_exits_1_with_the_reason(tmp_path, capsys):
    out = tmp_path / "out"
    spec = _spec(tmp_path, data=str(tmp_path / "no-such-folder"), max_params=1e6)
    code, out_text, err = _search(capsys, str(spec), "--out", str(out))
    line = _one_line(err)
    assert code == 1 and "no trial of the search completed" in line, line
    assert "no-such-folder" in line  # the first trial's own reason
    assert "2 trials: 0 complete, 0 pruned, 2 failed" in out_text
    assert (out / "search.csv").is_file() and not (out / "best.yaml").exists()


# --- 15.5: a search writes only where it may -----------------------------------------------------


def test_an_existing_folder_not_made_by_search_is_refused(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "search.csv").write_text("my own results\n")
    code, _, err = _search(capsys, str(_spec(tmp_path)), "--out", str(out))
    line = _one_line(err)
    assert code == 1 and "did not create" in line, line
    assert (out / "search.csv").read_text() == "my own results\n"
    assert sorted(p.name for p in out.iterdir()) == ["search.csv"]


def test_its_own_folder_and_an_empty_one_are_accepted(tmp_path, capsys):
    out = tmp_path / "empty"
    out.mkdir()
    spec = str(_spec(tmp_path))
    assert _search(capsys, spec, "--out", str(out))[0] == 1  # every trial pruned by budget
    assert (out / ".cnnspec-search").is_file() and (out / "search.csv").is_file()
    code, out_text, _ = _search(capsys, spec, "--out", str(out))  # its own folder: resumes
    assert code == 1 and "2 trials: 0 complete, 2 pruned" in out_text


@pytest.mark.parametrize("where", ["file", "proc"])
def test_out_that_cannot_be_a_folder_is_one_line(tmp_path, capsys, where):
    out = tmp_path / "a-file"
    out.write_text("x")
    if where == "proc":
        out = Path("/proc/self/cnnspec-search")
    code, _, err = _search(capsys, str(_spec(tmp_path)), "--out", str(out))
    line = _one_line(err)
    assert code == 1 and line.startswith(f"--out {out}"), line


def test_another_programs_sqlite_file_is_left_alone(tmp_path, capsys):
    db = tmp_path / "app.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    con.commit()
    con.close()
    before = db.read_bytes()
    out = tmp_path / "out"
    code, _, err = _search(
        capsys, str(_spec(tmp_path)), "--out", str(out), "--storage", f"sqlite:///{db}"
    )
    line = _one_line(err)
    assert code == 2 and "another program's database (tables users)" in line, line
    assert db.read_bytes() == before and not out.exists()

    text = tmp_path / "notes.txt"
    text.write_text("not a database\n")
    code, _, err = _search(
        capsys, str(_spec(tmp_path)), "--out", str(out), "--storage", f"sqlite:///{text}"
    )
    assert code == 2 and "is not a SQLite database" in _one_line(err)
    assert text.read_text() == "not a database\n"


# --- 15.10: validate runs the search's own checks ------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("objective: val_accuracy", "objective: val_acc"), "search: 'val_acc' is not a metric"),
        (
            ("train.optimizer.adam.lr:", "train.optimiser.adam.lr:"),
            "search.space: 'train.optimiser.adam.lr' is not a value of this spec",
        ),
    ],
    ids=["objective", "path"],
)
def test_validate_refuses_what_search_refuses(tmp_path, capsys, edit, expected):
    spec = _spec(tmp_path)
    spec.write_text(spec.read_text().replace(*edit))
    assert main(["validate", str(spec)]) == 2
    from_validate = capsys.readouterr().err.strip()
    assert expected in from_validate and "ok " not in from_validate
    assert main(["search", str(spec), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip() == from_validate  # one check, one message


# --- 14.11: the objective plot -------------------------------------------------------------------


def test_objective_plot_leaves_out_trials_pruned_before_training(tmp_path):
    import optuna

    from cnnspec.search.report import objective_series
    from cnnspec.search.runner import prepare

    plan = prepare(_spec(tmp_path), [], None, out=tmp_path / "out")
    dist = {"train.optimizer.adam.lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)}
    params = {"train.optimizer.adam.lr": 1e-3}
    State = optuna.trial.TrialState
    study = optuna.create_study(direction="maximize")
    for trial in [
        optuna.trial.create_trial(
            state=State.COMPLETE, value=0.6, params=params, distributions=dist
        ),
        # over budget: pruned before it was built, it has no score at all
        optuna.trial.create_trial(state=State.PRUNED, params=params, distributions=dist),
        optuna.trial.create_trial(
            state=State.PRUNED,
            params=params,
            distributions=dist,
            intermediate_values={1: 0.3, 2: 0.4},
        ),
        optuna.trial.create_trial(
            state=State.COMPLETE, value=0.9, params=params, distributions=dist
        ),
        optuna.trial.create_trial(
            state=State.COMPLETE, value=0.7, params=params, distributions=dist
        ),
    ]:
        study.add_trial(trial)
    series = objective_series(plan, study.get_trials())
    assert series.complete == [(0, 0.6), (3, 0.9), (4, 0.7)]
    assert series.best == [(0, 0.6), (3, 0.9), (4, 0.9)]
    assert series.pruned == [(2, 0.4)]  # at its last epoch; trial 1 never trained: not drawn


def test_prepare_creates_nothing(tmp_path):
    from cnnspec.search.runner import prepare

    out = tmp_path / "deep" / "out"
    plan = prepare(_spec(tmp_path), [], None, out=out)
    assert plan.fingerprint and not (tmp_path / "deep").exists()


def test_a_folder_from_an_older_search_is_recognised(tmp_path):
    """A search folder written before the marker existed: an Optuna search.db and the search's
    own files only. The same names around another program's database are refused."""
    import optuna

    from cnnspec.errors import RunError
    from cnnspec.search.runner import prepare

    old = tmp_path / "old"
    old.mkdir()
    optuna.create_study(study_name="x", storage=f"sqlite:///{old / 'search.db'}")
    (old / "search.csv").write_text("number,state\n")
    assert prepare(_spec(tmp_path), [], None, out=old).out == old

    other = tmp_path / "other"
    other.mkdir()
    con = sqlite3.connect(other / "search.db")
    con.execute("CREATE TABLE accounts (id INTEGER)")
    con.commit()
    con.close()
    (other / "search.csv").write_text("mine\n")
    with pytest.raises(RunError, match="did not create"):
        prepare(_spec(tmp_path), [], None, out=other)
