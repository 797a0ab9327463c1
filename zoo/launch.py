"""Train the planned runs of a grid through a launcher (``--launcher NAME``), retrying failures.

``zoo sweep``, ``zoo ablate`` and an ensemble composition's member training plan their runs
(:class:`zoo.ablate.PlannedRun`, folder ``OUT_ROOT/NAME-HASH-sSEED``) and hand the missing ones to
:func:`launch_runs`. Each becomes a :class:`zoo.jobs.RunJob`: ``python -m zoo.cli run SPEC.toml --out
RUN --no-progress`` with the spec written to ``OUT_ROOT/.launch/NAME-HASH-sSEED/spec.toml`` and its
output to ``.../try-N.log`` beside it. The launcher (a ``register_launchers`` plugin: ``local``, ``ray``,
``slurm``) starts the jobs; this module

* skips a run whose folder holds ``results.json`` (written atomically, last: its presence is the one
  sign of a finished run; a folder with checkpoints only is resumed, never read as finished);
* counts a job as finished only when its command succeeded **and** its results file exists; otherwise
  reports it with its log and submits it again, up to ``retries`` times (``zoo run`` resumes from the
  run's last checkpoint);
* cancels every submitted job on Ctrl-C (or SIGTERM) and re-raises, so the command says how to resume:
  run it again, and only what is missing trains.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo import train
from zoo.ablate import PlannedRun, read_json
from zoo.cache import atomic_write_text
from zoo.errors import ComponentError, RunError, SpecError, ZooError
from zoo.jobs import DoneSubmission, Launcher, RunJob, Submission
from zoo.registry import get_component
from zoo.search import seed_search_cache
from zoo.spec import _coerce, _parse_value, parse_toml

__all__ = ["DEFAULT_LAUNCHER", "LauncherChoice", "LaunchOutcome", "Failure", "resolve_launcher", "launch_runs",
           "job_dir", "failure_report"]

DEFAULT_LAUNCHER = "local"
#: where a run's job files (its spec, one log per try) live, under the out root
JOBS_DIR = ".launch"
#: environment a job needs on a worker that does not inherit this process's (a Ray node)
FORWARDED_ENV = ("ZOO_DATA_DIR", "ZOO_CACHE_DIR", "ZOO_PLUGINS", "ZOO_DISABLE_PLUGINS", "HF_HOME", "HF_HUB_OFFLINE",
                 "TRANSFORMERS_OFFLINE", "XDG_CACHE_HOME", "ZOO_CPU_BF16")


@dataclass(frozen=True)
class LauncherChoice:
    """A launcher by name with its resolved options (defaults overlaid with the given ones)."""

    name: str = DEFAULT_LAUNCHER
    options: Mapping[str, Any] = field(default_factory=dict)

    def create(self) -> Launcher:
        try:
            return get_component("launcher", self.name).create(**self.options)
        except (ValueError, TypeError) as exc:
            if isinstance(exc, ZooError):
                raise
            raise ComponentError(f"launcher {self.name!r}: {exc}") from None

    def describe(self) -> str:
        return self.name + "".join(f" {k}={v}" for k, v in self.options.items())


def resolve_launcher(name: str | None = None, options: Sequence[str] = (), file: str | Path | None = None) -> LauncherChoice:
    """The launcher ``name`` (else the ``[launcher]`` table's ``name`` in ``file``, else ``local``) with the
    ``[launcher]`` table's options overlaid by ``KEY=VALUE`` ``options``: each key must be one of the
    launcher's options (close matches named), each value of its default's type."""
    table: dict[str, Any] = {}
    if file is not None:
        path = Path(file)
        try:
            data = parse_toml(path.read_text(encoding="utf-8"), str(path))
        except OSError as exc:
            raise SpecError(f"--launcher-config {path}: {exc.strerror or exc}") from None
        table = data.get("launcher")
        if not isinstance(table, dict):
            raise SpecError(f"--launcher-config {path}: no [launcher] table (e.g. [launcher] name = \"ray\", address = \"auto\")")
        table = dict(table)
    from_file = table.pop("name", None)
    name = name or from_file or DEFAULT_LAUNCHER
    component = get_component("launcher", name)  # unknown: close matches
    given: dict[str, Any] = dict(table)
    for item in options:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SpecError(f"--launcher-opt {item!r}: expected KEY=VALUE, e.g. workers=2")
        given[key] = _parse_value(raw.strip(), f"--launcher-opt {key}")
    component.check_options(given)
    resolved = {key: _coerce(value, component.config[key], f"launcher {name}: option {key}")
                for key, value in given.items()}
    choice = LauncherChoice(name, resolved)
    choice.create()  # the factory checks its values (workers=0) now, before anything is planned
    return choice


@dataclass(frozen=True)
class Failure:
    """A run that did not finish after its last try: why, and the log of that try."""

    run: PlannedRun
    reason: str
    log_path: Path | None
    tries: int


@dataclass
class LaunchOutcome:
    finished: list[PlannedRun]
    failed: list[Failure]


def job_dir(run: PlannedRun) -> Path:
    """``OUT_ROOT/.launch/NAME-HASH-sSEED``: the run's spec file and logs (its run folder stays the run's own)."""
    return run.out_dir.parent / JOBS_DIR / run.out_dir.name


def _check_finished(item: PlannedRun) -> None:
    recorded = read_json(item.results_path).get("requested_spec_hash")
    if recorded not in (None, item.spec.hash()):
        raise RunError(f"{item.results_path} holds spec {recorded}, not this configuration's {item.spec.hash()}; "
                       f"move it away or use another --out-root")


def _command(item: PlannedRun, spec_file: Path, data_dir: str | None, strict: bool) -> tuple[str, ...]:
    argv = [sys.executable, "-m", "zoo.cli", "run", str(spec_file.resolve()), "--out", str(item.out_dir.resolve()),
            "--no-progress"]
    if data_dir:
        argv += ["--data-dir", str(Path(data_dir).resolve())]
    if strict:
        argv.append("--strict")
    return tuple(argv)


def _in_process(item: PlannedRun, data_dir: str | None, strict: bool, progress: bool,
                log: Callable[[str], None]) -> Callable[[], int]:
    """Train ``item`` in this process (``local`` with one worker); a run's own error is its failure."""

    def train_here() -> int:
        train_here.error = ""  # type: ignore[attr-defined]
        try:
            train.run(item.spec, train.RunOptions(data_dir=data_dir, out_dir=str(item.out_dir), strict=strict, progress=progress,
                                                  log=log, after_test=seed_search_cache))
        except (ZooError, RuntimeError, ValueError, OSError) as exc:
            train_here.error = f"error: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"  # type: ignore[attr-defined]
            log(train_here.error)  # type: ignore[attr-defined]
            return 1
        return 0

    return train_here


def _last_error(log_path: Path | None) -> str:
    """The ``zoo: error`` line of a log, else its last non-empty line (one line, for the failure report)."""
    if log_path is None or not log_path.is_file():
        return ""
    lines = [line.strip() for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("zoo: error", "zoo: internal error", "error:"))]
    return (errors or lines or [""])[-1][:300]


def launch_runs(planned: Sequence[PlannedRun], choice: LauncherChoice = LauncherChoice(), *, retries: int = 1,
                data_dir: str | None = None, strict: bool = False, progress: bool = True,
                log: Callable[[str], None] = print, poll_s: float = 0.5) -> LaunchOutcome:
    """Train the runs of ``planned`` whose results are missing through ``choice``'s launcher (see the module
    docstring); returns what finished (in plan order) and what failed after ``retries`` retries."""
    if retries < 0:
        raise SpecError(f"--retries must be 0 or more, got {retries}")
    todo: list[PlannedRun] = []
    for i, item in enumerate(planned, 1):
        if item.done:
            _check_finished(item)
            log(f"[run {i}/{len(planned)}] {item.config.label} seed={item.seed}: done ({item.results_path}), skipping")
        else:
            todo.append(item)
    failed: list[Failure] = []
    if todo:
        failed = _schedule(todo, choice, retries=retries, data_dir=data_dir, strict=strict, progress=progress, log=log,
                           poll_s=poll_s, total=len(planned))
    gone = {id(f.run) for f in failed}
    return LaunchOutcome([p for p in planned if id(p) not in gone and p.done], failed)


def _schedule(todo: list[PlannedRun], choice: LauncherChoice, *, retries: int, data_dir: str | None, strict: bool,
              progress: bool, log: Callable[[str], None], poll_s: float, total: int) -> list[Failure]:
    launcher = choice.create()
    out_roots = {item.out_dir.parent for item in todo}
    launcher.start(next(iter(out_roots)))
    in_process = bool(getattr(launcher, "runs_in_process", False))
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    queue: list[tuple[PlannedRun, int]] = [(item, 1) for item in todo]  # (run, try number)
    running: list[tuple[PlannedRun, RunJob, Submission]] = []
    failed: list[Failure] = []
    finished = 0
    log(f"launcher {choice.describe()}: {len(todo)} runs to train, at most {launcher.slots} at once, "
        f"{retries} retr{'y' if retries == 1 else 'ies'} each")
    try:
        while queue or running:
            while queue and len(running) < launcher.slots:
                item, attempt = queue.pop(0)
                folder = job_dir(item)
                spec_file = folder / "spec.toml"
                if not in_process:  # a launcher training in this process needs no job files (nothing beside the runs)

                    atomic_write_text(spec_file, item.spec.to_toml())
                job = RunJob(label=f"{item.config.label} seed={item.seed}", argv=_command(item, spec_file, data_dir, strict),
                             out_dir=item.out_dir, log_path=folder / f"try-{attempt}.log", env=env, attempt=attempt,
                             in_process=_in_process(item, data_dir, strict, progress, log))
                log(f"[{job.label}] try {attempt} -> {item.out_dir}")
                submission = launcher.submit(job)
                if not isinstance(submission, DoneSubmission):
                    log(f"[{job.label}] submitted: {submission.job_id}; log {job.log_path}")
                running.append((item, job, submission))
            still = []
            for item, job, submission in running:
                try:
                    status = submission.poll()
                    reason = None if status in (None, 0) else f"exit status {status}"
                except Exception as exc:  # noqa: BLE001 - the engine's failure (killed, timed out) is the run's
                    status, reason = -1, f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
                if status is None:
                    still.append((item, job, submission))
                    continue
                if reason is None and not item.done:
                    reason = f"the command succeeded but {item.results_path} is missing"
                if reason is None:
                    finished += 1
                    log(f"[{job.label}] finished ({finished} of {len(todo)}; {total - len(todo)} were done before)")
                    continue
                here = isinstance(submission, DoneSubmission)
                where = None if here else job.log_path
                detail = getattr(job.in_process, "error", "") if here else _last_error(where)
                if job.attempt <= retries:
                    log(f"[{job.label}] FAILED on try {job.attempt} ({reason}{'; ' + detail if detail else ''})"
                        f"{f'; log {where}' if where else ''}; retrying (resumes from its last checkpoint)")
                    queue.append((item, job.attempt + 1))
                else:
                    log(f"[{job.label}] FAILED on try {job.attempt}, giving up ({reason}{'; ' + detail if detail else ''})"
                        f"{f'; log {where}' if where else ''}")
                    failed.append(Failure(item, reason + (f"; {detail}" if detail else ""), where, job.attempt))
            running = still
            if running:
                time.sleep(poll_s)
    except BaseException:
        if running:
            log(f"cancelling {len(running)} submitted run(s): "
                + ", ".join(f"{job.label} ({s.job_id})" for _, job, s in running))
        for _, _, submission in running:
            try:
                submission.cancel()
            except Exception:  # noqa: BLE001 - cancel the others all the same
                pass
        raise
    finally:
        launcher.close()
    return failed


def failure_report(failed: Sequence[Failure]) -> str:
    """The list of failed runs, one line each with the log to read (empty when none failed)."""
    if not failed:
        return ""
    lines = [f"{len(failed)} run(s) failed:"]
    for f in failed:
        lines.append(f"  {f.run.config.label} seed={f.run.seed} ({f.run.out_dir}): {f.reason}; "
                     f"{f.tries} tr{'y' if f.tries == 1 else 'ies'}" + (f"; log {f.log_path}" if f.log_path else ""))
    lines.append("rerun the same command to retry them (finished runs are skipped, interrupted ones resume)")
    return "\n".join(lines) + "\n"
