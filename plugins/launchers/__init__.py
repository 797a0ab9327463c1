"""Built-in launchers (``zoo.plugins.launchers``): where the runs of ``zoo sweep``/``zoo ablate`` train
(``--launcher NAME``, options with ``--launcher-opt KEY=VALUE``)."""

from zoo.registry import hookimpl


@hookimpl
def register_launchers(register):
    register(
        "local",
        "zoo.plugins.launchers.local:LocalLauncher",
        description="this machine: workers=1 trains in this process one run after another; N runs N subprocesses at once",
    )
    register(
        "ray",
        "zoo.plugins.launchers.ray:RayLauncher",
        description="each run a Ray task with num_cpus/num_gpus; address= joins a cluster, none starts a local one",
    )
    register(
        "slurm",
        "zoo.plugins.launchers.slurm:SlurmLauncher",
        description="each run a Slurm job through submitit (partition, time, gpus, cpus, mem_gb); cluster=local runs them here",
    )
