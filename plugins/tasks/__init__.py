"""Built-in evaluation tasks (``zoo.plugins.tasks``)."""

from zoo.registry import hookimpl


@hookimpl
def register_tasks(register):
    register(
        "chebi20",
        "zoo.data:ChEBI20Task",
        description="ChEBI-20 text<->molecule retrieval (Text2Mol protocol; galleries all/test)",
        config={"holdout_fraction": 0.1, "holdout_seed": 0},
    )
