"""Distributed tuning against the real PostgreSQL on 127.0.0.1:5432.

Workers are separate processes of ``src/hyperparameter_tuning.py`` sharing one Optuna
study on PostgreSQL and one MLflow tracking server backed by PostgreSQL. Each test gets
its own Optuna database (the tracking server's database is the module's own); all are
dropped afterwards. Without PostgreSQL these tests fail; they never skip.
"""

import contextlib
import json
import multiprocessing
import re
import signal
import string
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import optuna
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlflow.tracking import MlflowClient
from optuna.storages._heartbeat import get_heartbeat_thread

from mlflow_helpers import clean_env, mlflow_server
from pg_helpers import CuttableProxy, database_url, fresh_database, query
from rectune import failpoints, tuning
from rectune.tracking import PARENT_TAG
from rectune.tuning.best_params import read_best_hyperparameters, write_best_hyperparameters
from rectune.tuning.plan import TuningConfig

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SCRIPT = Path(__file__).resolve().parents[2] / "src" / "hyperparameter_tuning.py"
SECRET = "s3cret-Pw"
FAST_ALS = """model: als
parameters:
  factors: {type: categorical, choices: [8, 16]}
  regularization: {type: float, low: 0.01, high: 10, log: true}
  iterations: 4
"""
FAST_BPR = """model: bpr
parameters:
  factors: {type: categorical, choices: [8, 16]}
  learning_rate: {type: float, low: 0.005, high: 0.1, log: true}
  iterations: 4
"""
# About a second or more per trial: long enough to kill a worker in the middle of one.
SLOW_ALS = """model: als
parameters:
  factors: {type: categorical, choices: [96, 128]}
  regularization: {type: float, low: 0.01, high: 10, log: true}
  iterations: 25
"""


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory):
    """``mlflow server`` on a PostgreSQL database of its own, as the README starts it."""
    folder = tmp_path_factory.mktemp("mlflow-postgres")
    with (
        fresh_database("mlflow") as name,
        mlflow_server(database_url(name), folder / "artifacts", folder / "server.log") as url,
    ):
        yield url


@pytest.fixture
def optuna_db():
    with fresh_database("optuna") as name:
        yield name


@pytest.fixture
def workers(tmp_path, tracking_server, synthetic_dataset):
    """Start tuning workers as subprocesses in ``tmp_path``."""
    for name, text in (("fast", FAST_ALS), ("bpr", FAST_BPR), ("slow", SLOW_ALS)):
        (tmp_path / f"{name}.yaml").write_text(text)
    data_dir = synthetic_dataset.path.parent.parent
    experiment = f"distributed-{tmp_path.name}"

    def start(
        *args: str, output: str = "models/best_hyperparameters.json", **env: str
    ) -> subprocess.Popen:
        return subprocess.Popen(
            [
                sys.executable,
                str(SCRIPT),
                "--no-progress",
                "--pruner",
                "none",
                "--data-dir",
                str(data_dir),
                "--output",
                str(tmp_path / output),
                "--experiment-name",
                experiment,
                *args,
            ],
            cwd=tmp_path,
            env=clean_env(MLFLOW_TRACKING_URI=tracking_server, **env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    start.experiment = experiment
    return start


def finish(process: subprocess.Popen, timeout: float = 300) -> str:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output
    return output


def runs_of(tracking_server: str, experiment: str) -> list:
    client = MlflowClient(tracking_uri=tracking_server)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id], max_results=1000)


def trial_states(db: str) -> dict[int, str]:
    return dict(query(db, "SELECT number, state FROM trials ORDER BY number"))


def trials_run_here(output: str) -> int:
    match = re.search(r": (\d+) trials this run", output)
    assert match, output
    return int(match[1])


def test_two_workers_share_one_study_and_one_parent_run(
    workers, optuna_db, tracking_server, tmp_path
):
    storage = database_url(optuna_db, password=SECRET)
    args = ("--model", "als", "--n-trials", "6", "--storage", storage, "--study-name", "shared")
    processes = [
        workers(*args, "--search-space", "slow.yaml", output=f"w{i}/best.json") for i in range(2)
    ]
    outputs = [finish(p) for p in processes]

    states = trial_states(optuna_db)
    assert list(states) == list(range(len(states)))  # one trial per number
    complete = sorted(n for n, state in states.items() if state == "COMPLETE")
    assert len(complete) == 6
    surplus = query(
        optuna_db,
        "SELECT t.number FROM trials t JOIN trial_user_attributes a USING (trial_id) "
        "WHERE a.key = 'surplus'",
    )
    # Anything else is a trial a worker created as the study filled up, and never ran.
    assert {n for n, s in states.items() if s != "COMPLETE"} == {n for (n,) in surplus}
    assert sorted(trials_run_here(out) for out in outputs)[0] >= 1  # both did work
    assert sum(trials_run_here(out) for out in outputs) == 6

    runs = runs_of(tracking_server, workers.experiment)
    parents = [r for r in runs if r.data.tags.get("role") == "tuning-parent"]
    assert len(parents) == 1
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == len(runs) - 1  # no run outside the parent
    assert sorted(int(r.data.tags["trial_number"]) for r in children) == complete
    assert {r.info.status for r in children} == {"FINISHED"}
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["trials_finished"] == 6

    # The password reaches no output, no MLflow param or tag, and no written file.
    assert all(SECRET not in out for out in outputs)
    assert parent.data.tags["optuna_storage"] == database_url(optuna_db, password="***")
    for run in runs:
        assert SECRET not in json.dumps([run.data.params, run.data.tags])
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".md", ".html", ".log"):
            assert SECRET not in path.read_text(errors="replace"), path


def test_a_killed_workers_trial_is_failed_and_retried_by_the_next(
    workers, optuna_db, tracking_server
):
    args = (
        "--model", "als", "--n-trials", "4", "--heartbeat", "1", "--search-space", "slow.yaml",
        "--storage", database_url(optuna_db), "--study-name", "crash",
    )  # fmt: skip
    first = workers(*args)
    running_with_a_run = (
        "SELECT t.number FROM trials t JOIN trial_user_attributes a USING (trial_id) "
        "WHERE t.state = 'RUNNING' AND a.key = 'mlflow_run_id'"
    )
    deadline = time.monotonic() + 120
    while not (busy := _try_query(optuna_db, running_with_a_run)):
        assert first.poll() is None, first.communicate()[0]
        assert time.monotonic() < deadline, "no trial started in 120 s"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    # Trials run two at a time by default: the kill may catch one or both.
    killed = sorted(n for n, state in trial_states(optuna_db).items() if state == "RUNNING")
    assert busy[0][0] in killed and len(killed) <= 2  # nobody is left to end them

    output = finish(workers(*args))

    states = trial_states(optuna_db)
    assert all(states[n] == "FAIL" for n in killed)
    assert sum(state == "COMPLETE" for state in states.values()) == 4
    params = (
        "SELECT param_name, param_value FROM trial_params p JOIN trials t USING (trial_id) "
        "WHERE t.number = {} ORDER BY param_name"
    )
    for number in killed:
        retries = query(
            optuna_db,
            "SELECT t.number, t.state FROM trials t JOIN trial_system_attributes a "
            f"USING (trial_id) WHERE a.key = 'failed_trial' AND a.value_json = '{number}'",
        )
        assert len(retries) == 1 and retries[0][1] == "COMPLETE"  # retried once, with success
        # The retry has its own MLflow run, not the dead trial's.
        run_ids = (
            "SELECT value_json FROM trial_user_attributes a JOIN trials t USING (trial_id) "
            "WHERE t.number = {} AND a.key = 'mlflow_run_id'"
        )
        dead_run = query(optuna_db, run_ids.format(number))
        assert query(optuna_db, run_ids.format(retries[0][0])) not in ([], dead_run)
        # The retry keeps every parameter the dead trial had sampled; a trial killed part-way
        # through its sampling (or before it) has the rest sampled afresh.
        original = query(optuna_db, params.format(number))
        retried = query(optuna_db, params.format(retries[0][0]))
        assert set(original) <= set(retried) and len(retried) == 2
    assert f"trial(s) {', '.join(map(str, killed))} had stopped sending heartbeats" in output

    runs = runs_of(tracking_server, workers.experiment)
    parents = [r for r in runs if r.data.tags.get("role") == "tuning-parent"]
    assert len(parents) == 1  # the restarted worker reopened the parent
    by_trial = {}
    for run in runs:
        if run.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id:
            by_trial.setdefault(int(run.data.tags["trial_number"]), []).append(run)
    assert all(len(found) == 1 for found in by_trial.values())
    assert by_trial[busy[0][0]][0].info.status == "KILLED"
    for number in killed:
        if number in by_trial:  # a trial killed before its run was made has none
            assert by_trial[number][0].info.status == "KILLED"
            assert by_trial[number][0].data.tags["state"] == "FAIL"
    finished = sorted(n for n, found in by_trial.items() if found[0].info.status == "FINISHED")
    assert finished == sorted(n for n, state in states.items() if state == "COMPLETE")


def _try_query(db: str, sql: str) -> list[tuple]:
    try:
        return query(db, sql)
    except Exception:  # the tables do not exist until the first worker makes them
        return []


def test_concurrent_als_and_bpr_tuning_keep_both_entries(workers, tmp_path):
    # Both on the default storage (one SQLite file beside the output) and one output file.
    processes = [
        workers("--model", model, "--n-trials", "3", "--search-space", space)
        for model, space in (("als", "fast.yaml"), ("bpr", "bpr.yaml"))
    ]
    for process in processes:
        finish(process)
    document = read_best_hyperparameters(tmp_path / "models" / "best_hyperparameters.json")
    assert set(document) == {"als", "bpr"}
    assert document["als"]["iterations"] == document["bpr"]["iterations"] == 4


def _write_many(output: str, model: str, times: int) -> None:
    for i in range(times):
        write_best_hyperparameters(Path(output), model, {"i": i}, {"i": i})


def test_simultaneous_writers_never_lose_an_entry_or_leave_a_torn_file(tmp_path):
    output = tmp_path / "best.json"
    context = multiprocessing.get_context("spawn")
    writers = [
        context.Process(target=_write_many, args=(str(output), model, 150))
        for model in ("als", "bpr")
    ]
    for writer in writers:
        writer.start()
    seen = set()
    while any(w.is_alive() for w in writers):
        if output.exists():
            seen.add(tuple(sorted(json.loads(output.read_text()))))  # always whole JSON
    for writer in writers:
        writer.join(timeout=120)
        assert writer.exitcode == 0
    assert json.loads(output.read_text()) == {"als": {"i": 149}, "bpr": {"i": 149}}
    assert seen  # the reader saw the file while it was being rewritten


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_trial_beats_from_its_creation_and_one_that_never_beat_goes_stale(optuna_db, monkeypatch):
    storage = tuning.make_storage(database_url(optuna_db), heartbeat=1)
    clock = {"now": 0.0}
    monkeypatch.setattr(storage, "_silent", tuning.SilentTrials(3, lambda: clock["now"]))
    study = optuna.create_study(storage=storage, study_name="s")
    beating = "SELECT trial_id FROM trial_heartbeats"

    live = study.ask()
    assert query(optuna_db, beating) == [(live._trial_id,)]  # before any heartbeat thread
    study.enqueue_trial({"x": 1})
    taken = study.ask()
    assert taken.number == 1
    assert sorted(query(optuna_db, beating)) == [(live._trial_id,), (taken._trial_id,)]

    # Created by a worker that died before its first heartbeat (a plain RDB storage
    # records none).
    plain = optuna.storages.RDBStorage(database_url(optuna_db))
    lost = optuna.load_study(study_name="s", storage=plain).ask()
    tuning.fail_stale_trials(study)
    clock["now"] += 3.5
    for trial in (live, taken):
        storage.record_heartbeat(trial._trial_id)
    tuning.fail_stale_trials(study)
    assert trial_states(optuna_db) == {0: "RUNNING", 1: "RUNNING", 2: "FAIL", 3: "WAITING"}
    assert study.trials[3].system_attrs["failed_trial"] == lost.number  # queued once more


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_heartbeats_go_on_after_a_short_outage(optuna_db, caplog):
    proxy = CuttableProxy()
    storage = tuning.make_storage(database_url(optuna_db, password=SECRET, port=proxy.port), 1)
    study = optuna.create_study(storage=storage, study_name="s")
    trial_id = study.ask()._trial_id
    beat = f"SELECT heartbeat FROM trial_heartbeats WHERE trial_id = {trial_id}"
    heartbeat = get_heartbeat_thread(trial_id, storage)  # as Optuna beats, every second
    heartbeat.start()
    try:
        time.sleep(0.5)
        proxy.cut()
        time.sleep(2.5)  # two beats lost
        before = query(optuna_db, beat)
        proxy.restore()
        time.sleep(2)
        after = query(optuna_db, beat)
    finally:
        heartbeat.join()
    assert after > before  # the thread lived through the outage and beat again
    lost = [r.getMessage() for r in caplog.records if "while recording a heartbeat" in r.message]
    assert lost and all("postgresql://postgres:***@" in m for m in lost)
    assert SECRET not in caplog.text


def test_lost_connection_is_retried_then_reported(
    tmp_path, monkeypatch, optuna_db, tracking_server, synthetic_dataset
):
    (tmp_path / "fast.yaml").write_text(FAST_ALS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server)
    monkeypatch.setattr(tuning.loop, "STORAGE_RETRY_DELAYS", (0.5, 0.5, 0.5, 0.5))
    proxy = CuttableProxy()
    config = TuningConfig(
        model="als",
        n_trials=12,
        search_space=tmp_path / "fast.yaml",
        storage=database_url(optuna_db, password=SECRET, port=proxy.port),
        study_name="flaky",
        pruner="none",
        heartbeat=1,
        data_dir=synthetic_dataset.path.parent.parent,
        output=tmp_path / "best.json",
        experiment_name=f"flaky-{tmp_path.name}",
        show_progress=False,
    )

    # A short outage: the worker retries, reconnects and finishes the study.
    cutter = start_cutter(optuna_db, proxy, restore_after=1.0)
    result = tuning.run_tuning(config)
    cutter.join(timeout=60)
    assert not cutter.is_alive()
    states = trial_states(optuna_db)
    assert list(states) == list(range(len(states)))
    complete = sorted(n for n, state in states.items() if state == "COMPLETE")
    assert len(complete) == 12 and result.counts["study_finished"] == 12
    children = [
        r
        for r in runs_of(tracking_server, config.experiment_name)
        if r.data.tags.get("mlflow.parentRunId") == result.parent_run_id
    ]
    # A trial cut off mid-way was failed and retried; none is recorded as done twice.
    finished = sorted(
        int(r.data.tags["trial_number"]) for r in children if r.info.status == "FINISHED"
    )
    assert finished == complete

    # An outage that lasts: the worker gives up with one clear, redacted error.
    with fresh_database("optuna") as second:
        config = TuningConfig(
            **{
                **config.__dict__,
                "storage": database_url(second, password=SECRET, port=proxy.port),
                "n_trials": 50,
            }
        )
        cutter = start_cutter(second, proxy, restore_after=None)
        with pytest.raises(tuning.StorageUnavailableError) as caught:
            tuning.run_tuning(config)
        cutter.join(timeout=60)
        assert not cutter.is_alive()
    message = str(caught.value)
    assert "lost the Optuna storage postgresql://postgres:***@" in message
    assert "4 retries" in message and "run the same command to resume" in message
    assert SECRET not in message


def start_cutter(db: str, proxy: CuttableProxy, restore_after: float | None) -> threading.Thread:
    """Start :func:`cut_after_three_trials` in a thread (a daemon: were the tuning to fail
    before 3 trials, it must not keep pytest from exiting)."""
    cutter = threading.Thread(
        target=cut_after_three_trials, args=(db, proxy, restore_after), daemon=True
    )
    cutter.start()
    return cutter


def cut_after_three_trials(db: str, proxy: CuttableProxy, restore_after: float | None) -> None:
    """Cut the proxy once ``db``'s study has 3 complete trials; restore it later if asked."""
    complete = "SELECT 1 FROM trials WHERE state = 'COMPLETE'"
    while len(_try_query(db, complete)) < 3:
        time.sleep(0.02)
    proxy.cut()
    if restore_after is not None:
        time.sleep(restore_after)
        proxy.restore()


def tune_in(folder: Path, dataset, *args: str) -> subprocess.CompletedProcess:
    """Run the tuning script once in ``folder``, tracking to a SQLite store there."""
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--data-dir", str(dataset.path.parent.parent)],
        cwd=folder,
        env=clean_env(MLFLOW_TRACKING_URI=f"sqlite:///{folder / 'mlflow.db'}"),
        capture_output=True,
        text=True,
        timeout=300,
    )


HARD_PASSWORDS = [
    # Percent-encoded, with every character that needs it.
    (
        "percent-encoded",
        "postgresql://postgres:{}@127.0.0.1:5432/{{db}}".format(quote("p@ss:w/rd #?&=Zx", safe="")),
        "p@ss:w/rd #?&=Zx",
    ),
    # Raw ':' and '/' after an encoded '@': SQLAlchemy and psycopg accept it.
    (
        "raw colon and slash",
        "postgresql://postgres:p%40ss:w/rd-Q7@127.0.0.1:5432/{db}",
        "p@ss:w/rd-Q7",
    ),
    # A password as a query parameter.
    ("query", "postgresql://postgres@127.0.0.1:5432/{db}?password=Qz-s3cret-9", "Qz-s3cret-9"),
]


@pytest.mark.parametrize(
    ("form", "url", "password"), HARD_PASSWORDS, ids=[f for f, *_ in HARD_PASSWORDS]
)
def test_no_form_of_a_storage_password_reaches_anything_written(
    form, url, password, tmp_path, optuna_db, synthetic_dataset
):
    (tmp_path / "fast.yaml").write_text(FAST_ALS)
    storage = url.format(db=optuna_db)
    process = tune_in(
        tmp_path, synthetic_dataset, "--no-progress", "--model", "als", "--n-trials", "2",
        "--search-space", "fast.yaml", "--storage", storage, "--study-name", "secret",
    )  # fmt: skip
    assert process.returncode == 0, process.stdout + process.stderr
    assert "Best (trial" in process.stdout
    secrets = {password, quote(password, safe=""), *(p for p in password.split("@") if len(p) >= 4)}
    assert_written_nowhere(secrets, process, tmp_path, [optuna_db])


#: Characters of generated passwords: every one a URL gives a meaning to, and a few more.
PASSWORD_CHARACTERS = string.ascii_letters + string.digits + "@:/%#?&=+!$;,~ -_."


@settings(
    max_examples=3,
    deadline=None,
    derandomize=True,  # the same passwords in every run of the suite
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    middle=st.text(PASSWORD_CHARACTERS, min_size=6, max_size=14),
    form=st.sampled_from(["userinfo", "query"]),
)
def test_generated_passwords_in_the_storage_and_tracking_urls_reach_nothing_written(
    middle, form, tmp_path_factory, optuna_db, mlflow_db, synthetic_dataset
):
    # Fixed ends keep the secret specific: a bare generated "000000" could be in any
    # binary file by chance.
    password = f"Rt{middle}Q7"
    encoded = quote(password, safe="")
    storage = (
        f"postgresql://postgres:{encoded}@127.0.0.1:5432/{optuna_db}"
        if form == "userinfo"
        else f"postgresql://postgres@127.0.0.1:5432/{optuna_db}?password={encoded}"
    )
    tracking = f"postgresql://postgres:{encoded}@127.0.0.1:5432/{mlflow_db}"
    folder = tmp_path_factory.mktemp("secret")
    (folder / "fast.yaml").write_text(FAST_ALS)
    process = subprocess.run(
        [
            sys.executable, str(SCRIPT), "--no-progress", "--model", "als", "--n-trials", "2",
            "--search-space", "fast.yaml", "--storage", storage,
            "--study-name", f"secret-{folder.name}",
            "--data-dir", str(synthetic_dataset.path.parent.parent),
        ],
        cwd=folder,
        env=clean_env(MLFLOW_TRACKING_URI=tracking),
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert process.returncode == 0, process.stdout + process.stderr
    assert "Best (trial" in process.stdout
    assert_written_nowhere({password, encoded}, process, folder, [optuna_db, mlflow_db])


@pytest.fixture
def mlflow_db():
    with fresh_database("mlflow") as name:
        yield name


def assert_written_nowhere(
    secrets: set[str], process: subprocess.CompletedProcess, folder: Path, databases: list[str]
) -> None:
    """No secret in the process's output, in any file under ``folder`` (the output, its
    provenance, the report, a SQLite MLflow store, the artifacts) or in any row of the
    PostgreSQL ``databases`` (Optuna's attributes, MLflow's params and tags)."""
    files = [path for path in folder.rglob("*") if path.is_file()]
    rows = {
        database: json.dumps(
            [
                query(database, f'SELECT * FROM "{table}"')
                for (table,) in query(
                    database,
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = 'public'",
                )
            ],
            default=str,
        )
        for database in databases
    }
    for secret in secrets:
        assert secret not in process.stdout + process.stderr
        for path in files:
            assert secret.encode() not in path.read_bytes(), path
        for database, dump in rows.items():
            assert secret not in dump, database


def test_a_raw_at_in_a_storage_password_is_refused_without_quoting_it(tmp_path, synthetic_dataset):
    process = tune_in(
        tmp_path, synthetic_dataset, "--model", "als",
        "--storage", "postgresql://postgres:r@w-s3cret-8@127.0.0.1:5432/test",
    )  # fmt: skip
    assert process.returncode == 2
    assert process.stderr.strip().splitlines() == [
        "Error: --storage postgresql://postgres:***@127.0.0.1:5432/test: the password holds "
        "a raw '@', which the driver would read as the start of the host; write it "
        "percent-encoded, as %40"
    ]
    assert "w-s3cret-8" not in process.stdout + process.stderr


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_two_workers_started_at_once_on_a_fresh_mlflow_store_both_finish(
    store, tmp_path, synthetic_dataset
):
    (tmp_path / "fast.yaml").write_text(FAST_ALS)
    with contextlib.ExitStack() as stack:
        if store == "sqlite":
            uri = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"
        else:
            uri = database_url(stack.enter_context(fresh_database("mlflow")))
        barrier = tmp_path / "go"
        # Each waits for the same file, so that both open the store in the same moment.
        starter = (
            "import os, runpy, sys, time\n"
            "import rectune.tracking, rectune.tuning.study\n"  # the slow imports before the start
            f"while not os.path.exists({str(barrier)!r}): time.sleep(0.001)\n"
            f"sys.argv = [{str(SCRIPT)!r}] + sys.argv[1:]\n"
            f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n"
        )
        processes = [
            subprocess.Popen(
                [
                    sys.executable, "-c", starter, "--no-progress", "--model", "als",
                    "--n-trials", "1", "--search-space", "fast.yaml",
                    "--data-dir", str(synthetic_dataset.path.parent.parent),
                    "--output", str(tmp_path / f"w{i}" / "best.json"),
                ],
                cwd=tmp_path,
                env=clean_env(MLFLOW_TRACKING_URI=uri, PYTHONPATH=str(SCRIPT.parents[0])),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for i in range(2)
        ]  # fmt: skip
        time.sleep(3)  # both are running and wait
        barrier.touch()
        for process in processes:
            finish(process)
        experiments = MlflowClient(tracking_uri=uri).search_experiments()
        assert [e.name for e in experiments if e.name.startswith("rectune")] == ["rectune-als"]


TUNING_POINTS = [p for p in failpoints.POINTS if p != "before_link"]  # split and training


@pytest.mark.parametrize("point", TUNING_POINTS)
def test_a_worker_killed_at_any_point_leaves_optuna_and_mlflow_in_agreement(
    point, workers, optuna_db, tracking_server, tmp_path
):
    args = (
        "--model", "als", "--n-trials", "5", "--heartbeat", "1", "--search-space", "fast.yaml",
        "--storage", database_url(optuna_db), "--study-name", "crash",
    )  # fmt: skip
    doomed = workers(*args, RECTUNE_FAILPOINT=f"{point}:1")
    output = doomed.communicate(timeout=180)[0]
    assert doomed.returncode == -signal.SIGKILL, output  # it did reach the point
    for process in [workers(*args), workers(*args)]:
        finish(process)

    states = trial_states(optuna_db)
    assert set(states.values()) <= {"COMPLETE", "PRUNED", "FAIL"}
    assert sum(state == "COMPLETE" for state in states.values()) >= 5
    surplus = {
        n for (n,) in query(
            optuna_db,
            "SELECT t.number FROM trials t JOIN trial_user_attributes a USING (trial_id) "
            "WHERE a.key = 'surplus'",
        )
    }  # fmt: skip
    runs = runs_of(tracking_server, workers.experiment)
    assert [r for r in runs if r.info.status == "RUNNING"] == []
    parents = [r for r in runs if r.data.tags.get("role") == "tuning-parent"]
    assert len(parents) == 1
    children = [r for r in runs if r.data.tags.get(PARENT_TAG) == parents[0].info.run_id]
    assert len(children) == len(runs) - 1
    by_trial: dict[int, list] = {}
    for run in children:
        by_trial.setdefault(int(run.data.tags["trial_number"]), []).append(run)
    agrees = {"COMPLETE": {"FINISHED"}, "PRUNED": {"FINISHED"}, "FAIL": {"FAILED", "KILLED"}}
    for number, state in states.items():
        found = by_trial.get(number, [])
        if number in surplus:
            assert found == []  # made as the study filled up, and never run
        else:
            assert len(found) == 1, (number, state, [r.info.status for r in found])
            assert found[0].info.status in agrees[state], (number, state)
    best = [r for r in children if r.data.tags.get("best_trial") == "true"]
    assert len(best) == 1
    complete = query(
        optuna_db,
        "SELECT t.number FROM trials t WHERE t.state = 'COMPLETE'",
    )
    params = (
        "SELECT param_name, param_value FROM trial_params p JOIN trials t USING (trial_id) "
        "WHERE t.number = {} ORDER BY param_name"
    )
    combos = [tuple(query(optuna_db, params.format(n))) for (n,) in complete]
    assert len(combos) == len(set(combos))  # no combination completed twice
    written = tmp_path / "models" / "best_hyperparameters.json"
    provenance = tuning.matching_provenance(written, "als")
    assert provenance and provenance["params"] == read_best_hyperparameters(written)["als"]
    assert str(provenance["trial_number"]) == best[0].data.tags["trial_number"]


# 32 combinations: 10 trials and the shared ones they record (on top) do not use them
# up, so no trial has to reuse a combination (which it then would, by design).
GRID_ALS = """model: als
parameters:
  factors: {type: categorical, choices: [4, 8, 12, 16]}
  regularization: {type: categorical, choices: [0.1, 1.0, 10.0, 100.0]}
  iterations: {type: categorical, choices: [2, 4]}
"""


def test_workers_starting_together_complete_each_combination_once(workers, optuna_db, tmp_path):
    (tmp_path / "grid.yaml").write_text(GRID_ALS)
    args = (
        "--model", "als", "--n-trials", "10", "--search-space", "grid.yaml",
        "--storage", database_url(optuna_db), "--study-name", "once",
    )  # fmt: skip
    for process in [workers(*args, output=f"w{i}/best.json") for i in range(3)]:
        finish(process)
    combos = query(
        optuna_db,
        "SELECT t.number, p.param_name, p.param_value FROM trials t "
        "JOIN trial_params p USING (trial_id) WHERE t.state = 'COMPLETE'",
    )
    by_trial: dict[int, tuple] = {}
    for number, name, value in combos:
        by_trial[number] = (*by_trial.get(number, ()), (name, value))
    completed = [tuple(sorted(p)) for p in by_trial.values()]
    assert 10 <= len(completed) < 32
    assert len(completed) == len(set(completed))  # none completed twice
