"""``local``: the runs on this machine, ``workers`` at a time.

``workers=1`` (the default) trains each run in this process, one after another, its output on the
terminal: what ``zoo sweep`` always did. ``workers=N`` starts N ``zoo run`` subprocesses at once, each
with ``threads`` CPU threads (default: this process's cores divided by N) and, when several GPUs are
visible, one GPU each (``CUDA_VISIBLE_DEVICES``); their output goes to each run's log file.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from zoo.api import DoneSubmission, RunJob, available_cpus, start_job_process, stop_process, visible_gpus


@dataclass
class _Process:
    job_id: str
    process: subprocess.Popen
    slot: int

    def poll(self) -> int | None:
        return self.process.poll()

    def cancel(self) -> None:
        stop_process(self.process)


class LocalLauncher:
    """Runs on this machine: in this process (``workers=1``) or as ``workers`` subprocesses at once."""

    def __init__(self, workers: int = 1, threads: int = 0):
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if threads < 0:
            raise ValueError(f"threads must be 0 (cores / workers) or more, got {threads}")
        self.workers = workers
        self.slots = workers
        self.runs_in_process = workers == 1  # job.in_process is called: no job files, output on the terminal
        self.threads = threads or max(1, available_cpus() // workers)
        self._gpus: list[str] = []
        self._running: list[_Process] = []

    def start(self, out_root: Path) -> None:
        self._gpus = visible_gpus() if self.workers > 1 else []

    def submit(self, job: RunJob):
        if self.workers == 1 and job.in_process is not None:
            return DoneSubmission(job_id="this process", status=job.in_process())
        self._running = [p for p in self._running if p.poll() is None]
        busy = {p.slot for p in self._running}
        slot = next(i for i in range(self.workers + len(busy) + 1) if i not in busy)
        env = {"OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads), "ZOO_WORKERS": str(self.threads)}
        if len(self._gpus) > 1:
            env["CUDA_VISIBLE_DEVICES"] = self._gpus[slot % len(self._gpus)]
        process = start_job_process(job, env)
        handle = _Process(job_id=f"pid {process.pid}", process=process, slot=slot)
        self._running.append(handle)
        return handle

    def close(self) -> None:
        for handle in self._running:
            handle.cancel()
        self._running = []
