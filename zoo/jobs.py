"""The launcher contract: one run of a grid as a job, and what a launcher needs to start it anywhere.

``zoo sweep``, ``zoo ablate`` and an ensemble composition's members hand each missing run to a
launcher (``register_launchers``, :mod:`zoo.launch` schedules them) as a :class:`RunJob`:
the command that trains it (``python -m zoo.cli run SPEC.toml --out RUN ...``, which resumes from
the run's last checkpoint), the file its output goes to and extra environment. A launcher returns a
:class:`Submission` per job; the scheduler polls it, retries a failure and cancels it on Ctrl-C.

:func:`run_job_command` runs a job's command where it is called (inside a Ray task, a Slurm job or
a local subprocess slot) and kills the command when it is itself interrupted, so a cancelled task
leaves no training behind. Nothing here imports torch.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

__all__ = ["RunJob", "Submission", "Launcher", "run_job_command", "start_job_process", "available_cpus",
           "visible_gpus", "stop_process", "DoneSubmission", "exit_with_parent", "PARENT_ENV"]

#: set by :func:`start_job_process` to the starting process's pid: a job's ``zoo run`` stops when that
#: process is gone (a Ray worker killed by its memory monitor, a sweep killed with SIGKILL)
PARENT_ENV = "ZOO_EXIT_WITH_PARENT"


@dataclass(frozen=True)
class RunJob:
    """One run to train: ``label`` (``tfidf_fp seed=0``), ``argv`` (the command that trains it),
    ``out_dir`` (the run folder; finished when it holds ``results.json``), ``log_path`` (where its
    output goes, one file per attempt), ``env`` (extra environment) and ``attempt`` (1, 2, ...)."""

    label: str
    argv: tuple[str, ...]
    out_dir: Path
    log_path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    attempt: int = 1
    #: trains the run in this process and returns an exit status (``local`` with one worker: today's
    #: sequential behaviour, output on the terminal); None where the scheduler offers none
    in_process: Callable[[], int] | None = field(default=None, repr=False, compare=False)


@runtime_checkable
class Submission(Protocol):
    """A submitted job: its engine's id, its exit status once finished, and a way to cancel it."""

    job_id: str

    def poll(self) -> int | None:
        """The exit status (0: the command succeeded) once finished, else None. Raising is a failure."""

    def cancel(self) -> None:
        """Stop the job (Ctrl-C of the sweep): kill the training, keep its checkpoints."""


@runtime_checkable
class Launcher(Protocol):
    """Where the runs of a grid train (see ``register_launchers`` in :mod:`zoo.registry.hookspecs`).
    A launcher that trains in this process (calls ``job.in_process``) sets ``runs_in_process = True``:
    no spec file or log is written for its jobs."""

    slots: int

    def start(self, out_root: Path) -> None: ...

    def submit(self, job: RunJob) -> Submission: ...

    def close(self) -> None: ...


@dataclass
class DoneSubmission:
    """A job that ran to its end inside :meth:`Launcher.submit` (in-process launchers)."""

    job_id: str
    status: int

    def poll(self) -> int | None:
        return self.status

    def cancel(self) -> None:
        pass


def available_cpus() -> int:
    """The cores this process may use (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def visible_gpus() -> list[str]:
    """The CUDA devices this process sees, as ``CUDA_VISIBLE_DEVICES`` entries (empty without CUDA)."""
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        return [d for d in (x.strip() for x in given.split(",")) if d and d != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - no torch/CUDA: no GPU
        return []


def start_job_process(job: RunJob, env: Mapping[str, str] | None = None) -> subprocess.Popen:
    """Start ``job``'s command in its own session (so it can be signalled as a group), output appended to
    ``job.log_path``, environment: this process's, then ``job.env``, then ``env`` (and :data:`PARENT_ENV`,
    so that the command stops if this process dies without stopping it: see :func:`exit_with_parent`)."""
    job.log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **job.env, **(env or {}), PARENT_ENV: str(os.getpid())}
    with open(job.log_path, "ab") as log:
        return subprocess.Popen(list(job.argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=full_env, start_new_session=True)


def stop_process(process: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM ``process``'s group (``zoo run`` stops like on Ctrl-C, keeping its checkpoints), SIGKILL after ``grace_s``."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def run_job_command(argv: list[str] | tuple[str, ...], env: Mapping[str, str], log_path: str | Path) -> int:
    """Run a job's command here, output appended to ``log_path``; returns its exit status. An interruption
    of this function (a cancelled Ray task, a Slurm job's signal) stops the command first."""
    job = RunJob(label="", argv=tuple(argv), out_dir=Path("."), log_path=Path(log_path), env=dict(env))
    process = start_job_process(job)
    try:
        return process.wait()
    except BaseException:
        stop_process(process)
        raise


def exit_with_parent(poll_s: float = 2.0) -> bool:
    """Stop this process (SIGTERM to itself: ``zoo run`` stops as on Ctrl-C, keeping its checkpoints)
    once the process that started it, named by :data:`PARENT_ENV`, is gone.

    A job's command runs in its own session so that it can be stopped as a group; the other side of
    that is that nothing stops it when its starter is killed outright (SIGKILL: a Ray worker killed
    by the memory monitor, ``kill -9`` of a sweep), and it would train on beside the retry. An orphan
    is re-parented, so a daemon thread compares ``os.getppid()`` with the recorded pid every
    ``poll_s`` seconds. Returns whether the watch was armed (only when the variable names this
    process's parent: a value inherited from further up is ignored).
    """
    expected = os.environ.get(PARENT_ENV, "")
    if not expected.isdigit() or int(expected) != os.getppid():
        return False

    def watch() -> None:
        while os.getppid() == int(expected):
            time.sleep(poll_s)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="zoo-exit-with-parent", daemon=True).start()
    return True
