"""``slurm``: each run a Slurm job submitted through submitit (``sbatch``), running ``zoo run``.

Options map to submitit's: ``partition`` (``slurm_partition``), ``time_min`` (``timeout_min``),
``gpus`` (``gpus_per_node``), ``cpus`` (``cpus_per_task``), ``mem_gb``, ``account``, ``qos``,
``constraint``. ``cluster="local"`` runs the jobs as local processes through submitit's local executor
(tests, a machine without Slurm); ``"auto"`` picks Slurm where ``sbatch`` exists. submitit's own files
(pickled jobs, its stdout/stderr) go to ``folder`` (default ``OUT_ROOT/.submitit``), on the shared
filesystem like the run folders.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.api import ComponentError, RunJob, run_job_command

CLUSTERS = ("slurm", "local", "auto")


@dataclass
class _Job:
    job_id: str
    job: Any

    def poll(self) -> int | None:
        if not self.job.done():
            return None
        return int(self.job.result())  # raises where the job failed outside the command (killed, timed out)

    def cancel(self) -> None:
        self.job.cancel(check=False)


class SlurmLauncher:
    """Slurm jobs through submitit, one per run (``cluster="local"``: submitit's local executor)."""

    def __init__(self, partition: str = "", time_min: int = 240, gpus: int = 0, cpus: int = 2, mem_gb: float = 16.0,
                 account: str = "", qos: str = "", constraint: str = "", cluster: str = "slurm", folder: str = "",
                 max_in_flight: int = 10000):
        if cluster not in CLUSTERS:
            raise ValueError(f"cluster must be one of {', '.join(CLUSTERS)}, got {cluster!r}")
        if time_min < 1 or gpus < 0 or cpus < 1 or mem_gb <= 0 or max_in_flight < 1:
            raise ValueError("time_min and cpus must be >= 1, gpus >= 0, mem_gb > 0, max_in_flight >= 1")
        self.cluster, self.folder = cluster, folder
        self.parameters: dict[str, Any] = {"timeout_min": time_min, "gpus_per_node": gpus, "cpus_per_task": cpus,
                                           "mem_gb": mem_gb, "nodes": 1, "tasks_per_node": 1}
        self.slurm = {k: v for k, v in {"slurm_partition": partition, "slurm_account": account, "slurm_qos": qos,
                                        "slurm_constraint": constraint}.items() if v}
        self.slots = max_in_flight
        self._executor = None

    def start(self, out_root: Path) -> None:
        try:
            import submitit
        except ImportError:
            raise ComponentError("launcher 'slurm' needs the submitit package: pip install 'submitit>=1.5'") from None
        folder = Path(self.folder) if self.folder else Path(out_root) / ".submitit"
        cluster = None if self.cluster == "auto" else self.cluster
        try:
            executor = submitit.AutoExecutor(folder=folder / "%j", cluster=cluster)
        except RuntimeError as exc:  # e.g. no sbatch on this machine
            raise ComponentError(f"launcher 'slurm' (cluster={self.cluster}): {exc}; "
                                 "use --launcher-opt cluster=local to run the jobs here") from None
        executor.update_parameters(name="molzoo", **self.parameters,
                                   **(self.slurm if executor.cluster == "slurm" else {}))
        self._executor = executor

    def submit(self, job: RunJob) -> _Job:
        threads = str(self.parameters["cpus_per_task"])
        # its cores: threads, and preprocessing processes
        env = {**job.env, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "ZOO_WORKERS": threads}
        submitted = self._executor.submit(run_job_command, list(job.argv), env, str(job.log_path))
        return _Job(job_id=f"{self._executor.cluster} job {submitted.job_id}", job=submitted)

    def close(self) -> None:
        self._executor = None
