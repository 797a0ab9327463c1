"""``ray``: each run a Ray task (``num_cpus``, ``num_gpus`` per run) running ``zoo run`` in a subprocess.

``address="auto"`` or ``"ray://HOST:10001"`` joins an existing cluster (``ray start --head`` on one
node, ``ray start --address=HEAD:6379`` on the others); without ``address`` a local cluster is started
for the sweep and stopped after it (``cpus``: its size, default every core). Every node must see the
run folders (``--out-root``) and the cache (``ZOO_CACHE_DIR``) at the same paths, and have molzoo
installed at the same Python path. Cancelling (Ctrl-C) interrupts the tasks, which stop their run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.api import ComponentError, RunJob, run_job_command


@dataclass
class _Task:
    job_id: str
    ref: Any

    def poll(self) -> int | None:
        import ray

        ready, _ = ray.wait([self.ref], timeout=0)
        return int(ray.get(ready[0])) if ready else None

    def cancel(self) -> None:
        import ray

        ray.cancel(self.ref)  # KeyboardInterrupt inside the task: run_job_command stops the run


class RayLauncher:
    """Ray tasks, one per run; ``address`` joins a cluster, none starts a local one."""

    def __init__(self, address: str = "", num_cpus: float = 1.0, num_gpus: float = 0.0, cpus: int = 0,
                 max_in_flight: int = 10000):
        if num_cpus <= 0 or num_gpus < 0 or cpus < 0 or max_in_flight < 1:
            raise ValueError("num_cpus must be > 0, num_gpus and cpus >= 0, max_in_flight >= 1")
        self.address, self.num_cpus, self.num_gpus, self.cpus = address, num_cpus, num_gpus, cpus
        self.slots = max_in_flight
        self._started = False
        self._remote = None

    def start(self, out_root: Path) -> None:
        try:
            import ray
        except ImportError:
            raise ComponentError("launcher 'ray' needs the ray package: pip install 'ray>=2.9'") from None
        if not ray.is_initialized():
            if self.address:
                ray.init(address=self.address, log_to_driver=False)
            else:
                ray.init(num_cpus=self.cpus or None, include_dashboard=False, log_to_driver=False)
            self._started = True
        self._remote = ray.remote(run_job_command)

    def submit(self, job: RunJob) -> _Task:
        threads = str(max(1, int(self.num_cpus)))
        # its cores: threads, and preprocessing processes
        env = {**job.env, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "ZOO_WORKERS": threads}
        ref = self._remote.options(num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_retries=0,
                                   name=job.label).remote(list(job.argv), env, str(job.log_path))
        return _Task(job_id=f"ray task {ref.task_id().hex()[:16]}", ref=ref)

    def close(self) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False
