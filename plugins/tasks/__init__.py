"""Built-in evaluation tasks (``zoo.plugins.tasks``): ``chebi20`` and ``pairs`` (the user's own pairs)."""

from zoo.registry import hookimpl


@hookimpl
def register_tasks(register):
    # options: the keyword parameters of each task's ``load`` (zoo.api.TaskBase)
    register("chebi20", "zoo.plugins.tasks.chebi20:ChEBI20Task",
             description="ChEBI-20 text<->molecule retrieval (Text2Mol protocol; galleries all/test)")
    register("pairs", "zoo.plugins.tasks.pairs:PairsTask",
             description="your own text-molecule pairs: CSV/TSV/JSONL (.gz) or SDF, split column or seeded split")
