"""Launchers (``--launcher local|ray|slurm``): options, the same numbers everywhere, and faults.

* options: an unknown launcher or option is refused with close matches, a value of the wrong type or
  range too, from ``--launcher-opt`` and from a ``[launcher]`` table;
* same numbers: one tiny sweep (2 compositions x 2 seeds) through ``local`` with 1 and 2 workers,
  ``ray`` (one local cluster for the module) and ``slurm`` (submitit's local executor) gives the same
  scores; each launcher starts on a cold cache of its own, so the parallel ones also race on it;
* faults: a run killed mid-training is reported with its log, retried and resumed from its
  checkpoint; a folder without ``results.json`` is never finished; an interrupted sweep cancels what
  it submitted and, started again, trains only what is missing.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from zoo.cli import main
from zoo.errors import ComponentError, SpecError, UnknownComponentError, UnknownOptionError
from zoo.launch import LauncherChoice, job_dir, launch_runs, resolve_launcher
from zoo.sweep import plan_sweep

#: tiny tfidf_fp/text2mol_mlp runs: text2mol_mlp's text slot swapped to TF-IDF (MiniLM would dominate the time)
TINY = ["text_encoder=tfidf", "text_encoder.svd_dim=16", "text_encoder.hidden_dim=32", "molecule_encoder.hidden_dim=32",
        "molecule_encoder.n_bits=256", "embed_dim=32", "train.batch_size=16", "train.lr=0.003",
        "train.holdout_fraction=0.15", "train.eval_batch_size=64", "train.warmup_epochs=1", "train.epochs=2"]
NAMES = ["tfidf_fp", "text2mol_mlp"]


# -- options ---------------------------------------------------------------------------------------
def test_zoo_list_launcher_names_the_built_ins(capsys):
    assert main(["list", "launcher"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {name} " in out for name in ("local", "ray", "slurm"))


@pytest.mark.parametrize("name, options, error, message", [
    ("rey", [], UnknownComponentError, "Did you mean: ray"),
    ("local", ["workrs=2"], UnknownOptionError, "Did you mean: workers"),
    ("local", ["workers=two"], SpecError, "workers must be an integer"),
    ("local", ["workers=0"], ComponentError, "workers must be at least 1"),
    ("slurm", ["cluster=lokal"], ComponentError, "cluster must be one of slurm, local, auto"),
    ("ray", ["num_gpus=[1]"], SpecError, "num_gpus must be a number"),
    ("local", ["workers"], SpecError, "expected KEY=VALUE"),
])
def test_bad_launcher_options_are_refused(name, options, error, message):
    with pytest.raises(error, match=message):
        resolve_launcher(name, options)


def test_options_come_from_a_launcher_table_then_the_command_line(tmp_path):
    path = tmp_path / "cluster.toml"
    path.write_text('[launcher]\nname = "slurm"\npartition = "gpu"\ntime_min = 30\nmem_gb = 8\n', encoding="utf-8")
    choice = resolve_launcher(None, ["time_min=45"], path)
    assert choice.name == "slurm" and choice.options == {"partition": "gpu", "time_min": 45, "mem_gb": 8.0}
    path.write_text('[launcher]\nname = "slurm"\npartiton = "gpu"\n', encoding="utf-8")
    with pytest.raises(UnknownOptionError, match="Did you mean: partition"):
        resolve_launcher(None, [], path)
    path.write_text('name = "ray"\n', encoding="utf-8")
    with pytest.raises(SpecError, match=r"no \[launcher\] table"):
        resolve_launcher(None, [], path)
    assert resolve_launcher().name == "local"


def test_the_cli_refuses_bad_options_before_planning(tmp_path, capsys):
    assert main(["sweep", "tfidf_fp", "--seeds", "1", "--out-root", str(tmp_path), "--dry-run",
                 "--launcher-opt", "workrs=2"]) == 2
    captured = capsys.readouterr()
    assert "Did you mean: workers" in captured.err and "runs planned" not in captured.out
    assert main(["ablate", "tfidf_fp", "--vary", "train.lr=0.001,0.002", "--seeds", "1", "--out-root", str(tmp_path),
                 "--dry-run", "--launcher", "slurm", "--launcher-opt", "gpus=one"]) == 2
    assert "option gpus must be an integer" in capsys.readouterr().err
    assert main(["run", "tfidf_fp", "--launcher", "ray"]) == 2
    assert "not an ensemble composition" in capsys.readouterr().err


# -- the same numbers through every launcher ---------------------------------------------------------
@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray cluster for the module (its start is the slow part); the launcher joins it."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from tiny import write_tiny_chebi

    return write_tiny_chebi(tmp_path_factory.mktemp("launch-data") / "chebi")


def _sweep(root: Path, data_dir: Path, monkeypatch, *launcher: str) -> dict[str, dict]:
    """The tiny sweep on a cold cache of its own; the scores of each run, by run folder name."""
    monkeypatch.setenv("ZOO_CACHE_DIR", str(root / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = ["sweep", *NAMES, "--seeds", "2", "--out-root", str(root / "runs"), "--data-dir", str(data_dir),
            "--no-progress", "--format", "json", *launcher, *(f"--set={s}" for s in TINY)]
    assert main(args) == 0
    return {d.name: json.loads((d / "results.json").read_text())["scores"] for d in (root / "runs").glob("*-s*")}


def _flat(scores, prefix=""):
    if isinstance(scores, dict):
        return {k: v for key, value in scores.items() for k, v in _flat(value, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): scores} if isinstance(scores, (int, float)) else {}


def test_every_launcher_gives_the_same_scores(tmp_path, tiny_data, monkeypatch, ray_cluster, capsys):
    pytest.importorskip("submitit")
    reference = _sweep(tmp_path / "local1", tiny_data, monkeypatch)
    assert len(reference) == 4
    others = {
        "local2": _sweep(tmp_path / "local2", tiny_data, monkeypatch, "--launcher-opt", "workers=2"),
        "ray": _sweep(tmp_path / "ray", tiny_data, monkeypatch, "--launcher", "ray", "--launcher-opt", "num_cpus=1"),
        "slurm": _sweep(tmp_path / "slurm", tiny_data, monkeypatch, "--launcher", "slurm", "--launcher-opt", "cluster=local",
                        "--launcher-opt", "cpus=1"),
    }
    out = capsys.readouterr().out
    assert "submitted: ray task" in out and "submitted: local job" in out and "submitted: pid" in out
    expected = {run: _flat(scores) for run, scores in reference.items()}
    assert all(len(flat) > 20 for flat in expected.values())
    for launcher, result in others.items():
        assert set(result) == set(reference), launcher
        for run, scores in result.items():
            got = _flat(scores)
            assert got.keys() == expected[run].keys()
            for key, value in got.items():
                assert value == pytest.approx(expected[run][key], abs=1e-6), (launcher, run, key)


# -- faults ----------------------------------------------------------------------------------------
def _plan(root: Path, *extra: str, seeds: int = 1, names=("tfidf_fp",)):
    return plan_sweep(list(names), seeds, [*TINY, *extra], root)


class _Choice(LauncherChoice):
    """A launcher object made by the test (not from the registry)."""

    def __init__(self, launcher):
        object.__setattr__(self, "name", type(launcher).__name__)
        object.__setattr__(self, "options", {})
        object.__setattr__(self, "launcher", launcher)

    def create(self):
        return self.launcher


def test_a_killed_run_is_reported_retried_and_resumes_from_its_checkpoint(tmp_path, tiny_data, monkeypatch):
    from zoo.plugins.launchers.local import LocalLauncher
    from zoo.runs import last_checkpoint

    class KillFirstTry(LocalLauncher):
        """``local`` with 2 workers whose first try of a run is SIGKILLed once its first checkpoint exists."""

        killed: list[str] = []

        def submit(self, job):
            handle = super().submit(job)
            if job.attempt == 1:
                threading.Thread(target=self._kill, args=(job, handle), daemon=True).start()
            return handle

        def _kill(self, job, handle):
            while handle.process.poll() is None:
                if last_checkpoint(job.out_dir).is_file():
                    os.killpg(handle.process.pid, signal.SIGKILL)
                    self.killed.append(job.label)
                    return
                time.sleep(0.02)

    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    planned = _plan(tmp_path / "runs", "train.epochs=8", "train.patience=8")
    messages: list[str] = []
    outcome = launch_runs(planned, _Choice(KillFirstTry(workers=2)), retries=1, data_dir=str(tiny_data),
                          log=messages.append, poll_s=0.05)
    assert KillFirstTry.killed == ["tfidf_fp seed=0"]
    assert not outcome.failed and outcome.finished == planned
    first_log = job_dir(planned[0]) / "try-1.log"
    assert any("FAILED on try 1" in m and "exit status -9" in m and str(first_log) in m and "retrying" in m for m in messages)
    second = (job_dir(planned[0]) / "try-2.log").read_text()
    assert "resuming from" in second
    results = json.loads(planned[0].results_path.read_text())
    assert len(results["training"]["history"]) == 8  # the epochs of both tries, once each


def test_a_run_failing_every_try_is_listed_with_its_log(tmp_path, tiny_data, monkeypatch, capsys):
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    args = ["sweep", "tfidf_fp", "--seeds", "1", "--out-root", str(tmp_path / "runs"), "--data-dir", str(tmp_path / "nowhere"),
            "--no-progress", "--launcher-opt", "workers=2", "--retries", "1", *(f"--set={s}" for s in TINY)]
    assert main(args) == 2  # nothing finished: no leaderboard
    captured = capsys.readouterr()
    assert "FAILED on try 1" in captured.out and "FAILED on try 2, giving up" in captured.out
    assert "1 run(s) failed:" in captured.err and "try-2.log" in captured.err and "no run of this sweep finished" in captured.err


@dataclass
class _Fake:
    """A submission that 'trains' by writing a results file on its second poll."""

    job_id: str
    run: object
    polls: int = 0
    cancelled: bool = False

    def poll(self):
        self.polls += 1
        if self.polls < 2:
            return None
        self.run.results_path.parent.mkdir(parents=True, exist_ok=True)
        self.run.results_path.write_text(json.dumps({"requested_spec_hash": self.run.spec.hash()}))
        return 0

    def cancel(self):
        self.cancelled = True


class _FakeLauncher:
    def __init__(self, planned, slots=2, interrupt_at=None):
        self.by_dir = {p.out_dir: p for p in planned}
        self.slots, self.interrupt_at = slots, interrupt_at
        self.submitted: list[_Fake] = []
        self.closed = False

    def start(self, out_root):
        pass

    def submit(self, job):
        if self.interrupt_at is not None and len(self.submitted) == self.interrupt_at:
            raise KeyboardInterrupt
        fake = _Fake(f"fake {len(self.submitted)}", self.by_dir[job.out_dir])
        self.submitted.append(fake)
        return fake

    def close(self):
        self.closed = True


def test_an_interrupted_sweep_cancels_what_it_submitted_and_then_trains_only_what_is_missing(tmp_path):
    planned = _plan(tmp_path, seeds=4)
    first = _FakeLauncher(planned, slots=2, interrupt_at=3)  # runs 0 and 1 finish, 2 is running when Ctrl-C comes
    with pytest.raises(KeyboardInterrupt):
        launch_runs(planned, _Choice(first), log=lambda m: None, poll_s=0)
    finished = [p for p in planned if p.done]
    assert first.closed and len(finished) == 2
    assert [f.cancelled for f in first.submitted] == [False, False, True]  # the third was still running
    second = _FakeLauncher(planned)
    outcome = launch_runs(planned, _Choice(second), log=lambda m: None, poll_s=0)
    assert sorted(f.run.seed for f in second.submitted) == sorted(p.seed for p in planned if p not in finished)
    assert outcome.finished == planned and not outcome.failed


def test_a_folder_without_its_results_file_is_not_finished(tmp_path):
    from zoo.evals.leaderboard import find_results
    from zoo.runs import checkpoint_dir

    (planned,) = _plan(tmp_path)
    checkpoint_dir(planned.out_dir).mkdir(parents=True)
    (checkpoint_dir(planned.out_dir) / "last.safetensors").write_bytes(b"partial")
    (planned.out_dir / ".results.json.tmp").write_text("{")  # a results file still being written
    assert not planned.done
    assert find_results([tmp_path])[0] == []
    launcher = _FakeLauncher([planned])
    launch_runs([planned], _Choice(launcher), log=lambda m: None, poll_s=0)
    assert len(launcher.submitted) == 1 and planned.done


def test_a_command_that_succeeds_without_results_is_a_failure(tmp_path):
    (planned,) = _plan(tmp_path)

    class NoResults(_FakeLauncher):
        def submit(self, job):
            fake = super().submit(job)
            fake.poll = lambda: 0  # exits 0, writes nothing
            return fake

    outcome = launch_runs([planned], _Choice(NoResults([planned])), retries=2, log=lambda m: None, poll_s=0)
    assert [f.tries for f in outcome.failed] == [3] and "results.json is missing" in outcome.failed[0].reason


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie that nobody reaped counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_a_job_stops_when_the_process_that_started_it_is_killed(tmp_path):
    """A Ray worker killed by the memory monitor (SIGKILL) cannot stop the run it started; the run,
    in its own session, must notice that its starter is gone and stop instead of training on."""
    import subprocess
    import sys

    child_pid = tmp_path / "child.pid"
    job_code = ("import time; from zoo.jobs import exit_with_parent; "
                "assert exit_with_parent(poll_s=0.1); time.sleep(120)")  # `zoo run` calls it at start
    starter_code = (
        "import sys, time; from pathlib import Path; from zoo.jobs import RunJob, start_job_process; "
        f"job = RunJob(label='x', argv=(sys.executable, '-c', {job_code!r}), out_dir=Path('.'), "
        f"log_path=Path({str(tmp_path / 'job.log')!r})); "
        f"Path({str(child_pid)!r}).write_text(str(start_job_process(job).pid)); time.sleep(120)")
    starter = subprocess.Popen([sys.executable, "-c", starter_code])
    try:
        deadline = time.monotonic() + 30
        while not child_pid.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        pid = int(child_pid.read_text())
        time.sleep(1.0)  # the job is up and watching
        assert _alive(pid), (tmp_path / "job.log").read_text()
        starter.kill()  # SIGKILL: no chance to stop its job
        starter.wait()
        deadline = time.monotonic() + 15
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(pid), "the job trains on after its starter was killed"
    finally:
        starter.kill()
        if child_pid.exists() and _alive(int(child_pid.read_text())):
            os.kill(int(child_pid.read_text()), signal.SIGKILL)


def test_an_inherited_parent_variable_arms_no_watch(monkeypatch):
    from zoo.jobs import PARENT_ENV, exit_with_parent

    monkeypatch.setenv(PARENT_ENV, str(os.getppid() + 1_000_000))  # someone else's starter
    assert exit_with_parent() is False
    monkeypatch.setenv(PARENT_ENV, "not a pid")
    assert exit_with_parent() is False
