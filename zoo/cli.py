"""The ``zoo`` command line. Heavy libraries are imported only by the commands that need them."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import threading
import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from zoo import DEBUG_ENV, __version__, debug_enabled
from zoo.cache import WORKERS_ENV, atomic_write_text
from zoo.distributed import launched_distributed
from zoo.errors import (
    LeaderboardError,
    OutputPathError,
    PluginLoadWarning,
    RunError,
    SpecError,
    UnverifiedFileWarning,
    ZooError,
)
from zoo.jobs import exit_with_parent
from zoo.registry import KINDS, list_components, plugin_info
from zoo.runs import CHECKPOINT_DIR, RESULTS_FILE, eval_path, run_folder_name
from zoo.spec import EnsembleSpec, _parse_value, load_composition, shipped_spec_hashes

#: What the commands call in modules that import torch, RDKit, FAISS, matplotlib, ray/submitit or FastAPI/uvicorn:
#: lazy ``"module:attr"`` strings (like the registry's component factories), imported by :func:`_lazy` when a
#: command runs, so that ``zoo --help`` and ``zoo list`` load none of them. Every other dependency is imported above.
LAZY = {
    # zoo run
    "RunOptions": "zoo.train:RunOptions",  # torch
    "run": "zoo.train:run",  # torch
    "seed_search_cache": "zoo.search:seed_search_cache",  # torch, FAISS (the step after training)
    "run_ensemble_composition": "zoo.ensembles:run_ensemble_composition",  # torch (member runs train)
    # zoo eval
    "evaluate_run": "zoo.eval_run:evaluate_run",  # torch
    "score_embeddings": "zoo.external:score_embeddings",  # numpy, torch
    "default_out": "zoo.external:default_out",  # numpy, torch
    # zoo report
    "build_report": "zoo.report:build_report",  # torch (RDKit, matplotlib when drawing)
    # zoo leaderboard, zoo sweep
    "load_runs": "zoo.evals.leaderboard:load_runs",  # torch (zoo.evals.ranking)
    "build_leaderboard": "zoo.evals.leaderboard:build_leaderboard",  # torch
    "RunRecord": "zoo.evals.leaderboard:RunRecord",  # torch
    "render": "zoo.evals.leaderboard:render",  # torch
    "plot_leaderboard": "zoo.evals.leaderboard:plot_leaderboard",  # torch, matplotlib
    # zoo ablate, zoo sweep
    "build_grid": "zoo.ablate:build_grid",  # torch
    "plan_runs": "zoo.ablate:plan_runs",  # torch
    "describe_plan": "zoo.ablate:describe_plan",  # torch
    "read_json": "zoo.ablate:read_json",  # torch
    "ablation_table": "zoo.ablate:ablation_table",  # torch
    "render_ablation": "zoo.ablate:render_ablation",  # torch
    "plan_sweep": "zoo.sweep:plan_sweep",  # torch
    "resolve_launcher": "zoo.launch:resolve_launcher",  # torch (ray, submitit: by their launcher plugins)
    "launch_runs": "zoo.launch:launch_runs",  # torch
    "failure_report": "zoo.launch:failure_report",  # torch
    # zoo search, zoo ensemble
    "open_searcher": "zoo.scoring:open_searcher",  # torch, FAISS
    "check_query": "zoo.search:check_query",  # torch
    "read_queries": "zoo.search:read_queries",  # torch
    "format_result": "zoo.search:format_result",  # torch
    "latency_summary": "zoo.search:latency_summary",  # torch
    "build_ensemble": "zoo.fuse_runs:build_ensemble",  # torch
    # zoo index
    "build_index": "zoo.library:build_index",  # torch, FAISS
    # zoo serve
    "serve_runs": "zoo.webapp:serve_runs",  # FastAPI, uvicorn, torch
}


def _lazy(*names: str) -> Any:
    """The :data:`LAZY` entries ``names``, imported when a command runs (one object for one name, else a tuple)."""
    found = []
    for name in names:
        module, _, attr = LAZY[name].partition(":")
        found.append(getattr(importlib.import_module(module), attr))
    return found[0] if len(found) == 1 else tuple(found)


RUN_HELP = f"run folder (holds {RESULTS_FILE} and {CHECKPOINT_DIR}/)"
DATA_DIR_HELP = ("the task's data: a folder (chebi20: else $ZOO_DATA_DIR, else the user cache; a finished run: "
                 "else the folder it recorded) or, for pairs, the folder its task.path is relative to")


def _add_data_dir(p: argparse.ArgumentParser) -> None:
    """``--data-dir``, the same for every command that loads a task's data."""
    p.add_argument("--data-dir", help=DATA_DIR_HELP)

KIND_ALIASES = {
    "text_encoders": "text_encoder", "text": "text_encoder",
    "molecule_encoders": "molecule_encoder", "molecule": "molecule_encoder",
    "aligners": "aligner", "losses": "loss", "compositions": "composition", "tasks": "task",
    "scorers": "scorer", "launchers": "launcher", "rerankers": "reranker",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zoo", description="molzoo: compose, train and evaluate text<->molecule retrieval models.")
    parser.add_argument("--version", action="version", version=f"molzoo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    _add_registry_commands(sub)
    _add_run_command(sub)
    _add_results_commands(sub)
    _add_grid_commands(sub)
    _add_library_commands(sub)
    _add_serve_command(sub)
    return parser


def _add_registry_commands(sub) -> None:
    """list, plugins, show: what is registered and what a composition resolves to."""
    p = sub.add_parser("list", help="list registered components")
    p.add_argument("kind", nargs="?", help="text_encoder, molecule_encoder, aligner, loss, composition, task, scorer or launcher")
    p.add_argument("pattern", nargs="?", help="wildcard filter on names, e.g. 'graph*'")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("plugins", help="list loaded plugins with versions and hooks")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("show", help="print a composition's resolved spec as TOML")
    p.add_argument("name", help="composition name or spec .toml file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")


def _add_run_command(sub) -> None:
    """run: train and evaluate one composition."""
    p = sub.add_parser("run", help="train and evaluate a composition, write results JSON")
    p.add_argument("name", help="composition name (e.g. aman) or spec .toml file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override: slot=component, slot.option=value, train.key=value, task.option=value (repeatable)")
    _add_data_dir(p)
    p.add_argument("--download", action="store_true", help="chebi20: download ChEBI-20 into the user cache if missing")
    p.add_argument("--out", help="run folder (default runs/NAME-HASH-sSEED, HASH the requested spec's, as printed; zoo sweep names runs alike)")
    p.add_argument("--strict", action="store_true", help="refuse to substitute an unavailable component (e.g. SciBERT offline)")
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint/results in the run folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--workers", type=int, metavar="N",
                   help="processes for RDKit featurization, OPSIN parsing and structure keys (default: every core; $ZOO_WORKERS)")
    p.add_argument("--members-root", metavar="DIR",
                   help="an ensemble composition's member runs: DIR/NAME-HASH-sSEED, finished ones reused (default runs)")
    _add_launcher_options(p)


def _add_results_commands(sub) -> None:
    """eval, report, leaderboard: use finished runs and their results files."""
    p = sub.add_parser("eval", help="evaluate a finished run's best checkpoint without retraining, or an external "
                                    "model's embeddings (--embeddings FILE.npz --task NAME)")
    p.add_argument("run", nargs="?", help=RUN_HELP)
    p.add_argument("--embeddings", metavar="FILE.npz",
                   help="score an external model instead of a run: text_ids, text, molecule_ids, molecule arrays (docs/tasks.md)")
    p.add_argument("--task", help="with --embeddings: the task to score on (e.g. chebi20, pairs)")
    p.add_argument("--name", help="with --embeddings: the model's name (leaderboard row external:NAME; default the file's name)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="task.KEY=VALUE",
                   help="with --embeddings: a task option, e.g. task.path=pairs.csv (repeatable)")
    p.add_argument("--split", default="test", help="test (default) or heldout")
    p.add_argument("--gallery", dest="galleries", action="append", metavar="G",
                   help="all, test or inbatch:N (repeatable; default: all and test)")
    _add_data_dir(p)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--save-embeddings", metavar="DIR", help="write query/candidate embeddings with CIDs as .npz")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="molecule embedding on the CPU: auto (default) = bf16 autocast only where the CPU has native "
                        "bf16 (AVX512-BF16/AMX, ~2x faster there), fp32 = as `zoo run` scores its test split; CUDA is always bf16")
    p.add_argument("--bf16", dest="precision", action="store_const", const="bf16", help="same as --precision bf16")
    p.add_argument("--out", help=f"results file (default {eval_path('RUN', 'SPLIT')})")
    p.add_argument("--allow-other-data", action="store_true",
                   help="evaluate on data other than the run's training data (refused by default; the results say so)")
    p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("report", help="write one self-contained HTML report about finished runs")
    p.add_argument("runs", nargs="+", metavar="RUN", help=f"run folders (each holds {RESULTS_FILE} and {CHECKPOINT_DIR}/)")
    p.add_argument("--out", default="report.html", help="HTML file to write (default report.html)")
    p.add_argument("--samples", type=int, default=8, help="test descriptions to show with their top-5 molecules (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the description sample (default 0)")
    p.add_argument("--gallery", default="all", choices=["all", "test"], help="molecules to retrieve from (default all)")
    _add_data_dir(p)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("leaderboard", help="rank finished runs: one table per protocol, mean ± std over seeds")
    p.add_argument("paths", nargs="*", default=["runs"], metavar="PATH", help=f"results files or folders searched for {RESULTS_FILE} (default runs/)")
    p.add_argument("--gallery", help="only this candidate pool: all, test or inbatch:N (default: a table per gallery)")
    p.add_argument("--filter", dest="filters", action="append", default=[], metavar="KEY=VALUE",
                   help="keep runs whose slot or spec option matches, e.g. loss=infonce, loss.margin=0.2 (KEY!=VALUE excludes; repeatable)")
    p.add_argument("--composition", metavar="PATTERN", help="wildcard on the composition name, e.g. 'text2mol*'")
    p.add_argument("--shipped", action="store_true",
                   help="only runs of installed compositions as shipped (`zoo run NAME` at the run's seed: "
                        "no --set, no ablation variant)")
    _add_table_options(p, metric_help="metric columns (repeatable; default all five)")
    p.add_argument("--sort", default="mrr", help="metric to rank by (best first): hits@1, hits@10, mrr, mean_rank, median_rank")
    p.add_argument("--plot", metavar="FILE.png", help="also write a bar chart of the --sort metric with std error bars")
    p.add_argument("--strict", action="store_true", help="an unreadable results file found in a folder is an error, not a warning")


def _add_grid_commands(sub) -> None:
    """ablate, sweep: train many runs over seeds and compare them."""
    p = sub.add_parser("ablate", help="train a grid of variants over seeds and compare each with the reference")
    p.add_argument("name", help="composition name or spec .toml file (the reference)")
    p.add_argument("--vary", dest="varies", action="append", required=True, metavar="KEY=A,B",
                   help="an axis: slot=component,... or option=value,... (first value is the reference; repeatable)")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per configuration (default 3)")
    _add_folds_option(p)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="applies to every configuration")
    p.add_argument("--out-root", help="folder of the runs (default runs/ablate-NAME)")
    p.add_argument("--one-at-a-time", action="store_true", help="vary one axis at a time from the reference instead of the full grid")
    p.add_argument("--dry-run", action="store_true", help="print the configurations and runs, train nothing")
    _add_launcher_options(p)
    _add_table_options(p, metric_help="metric(s) to compare (repeatable; default mrr)")
    p.add_argument("--gallery", help="candidate pool of the comparison (default: the spec's first, usually all)")
    _add_data_dir(p)
    p.add_argument("--strict", action="store_true", help="refuse to substitute an unavailable component")
    p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("sweep", help="train several compositions over seeds under one protocol, then print their leaderboard")
    p.add_argument("names", nargs="+", metavar="NAME", help="composition names or spec .toml files")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per composition (default 3)")
    _add_folds_option(p)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="applies to every composition (a slot option only where that slot's component has it)")
    p.add_argument("--out-root", default="runs/sweep", help="folder of the runs (default runs/sweep; shared naming with zoo ablate)")
    p.add_argument("--dry-run", action="store_true", help="print the runs, train nothing")
    _add_launcher_options(p)
    _add_table_options(p, metric_help="metric column(s) (repeatable; default: all)")
    p.add_argument("--gallery", help="only this gallery's table (all, test, inbatch:N)")
    p.add_argument("--plot", metavar="PNG", help="also draw the leaderboard as a bar chart")
    _add_data_dir(p)
    p.add_argument("--strict", action="store_true", help="refuse to substitute an unavailable component")
    p.add_argument("--no-progress", action="store_true")


def _add_folds_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--folds", type=int, default=0, metavar="K",
                   help="K-fold cross-validation over the training pairs (task.folds=K, task.fold=0..K-1 per seed): the table "
                        "compares the held-out MRR, mean ± std over folds and seeds, never test (docs/leaderboard.md)")


def _add_launcher_options(p: argparse.ArgumentParser) -> None:
    """Where the runs train: ``--launcher NAME`` with its options, and how often a failed run is retried."""
    p.add_argument("--launcher", metavar="NAME", help="where the runs train: local (default), ray, slurm (`zoo list launcher`)")
    p.add_argument("--launcher-opt", dest="launcher_opts", action="append", default=[], metavar="KEY=VALUE",
                   help="a launcher option, e.g. workers=2 (local), address=auto (ray), partition=gpu (slurm) (repeatable)")
    p.add_argument("--launcher-config", metavar="FILE.toml", help="a TOML file whose [launcher] table names the launcher and its options")
    p.add_argument("--retries", type=int, default=1, help="retries of a failed run, each resuming from its checkpoint (default 1)")


def _launcher_choice(args):
    """``--launcher``/``--launcher-opt``/``--launcher-config`` resolved and validated (before any planning)."""
    resolve_launcher = _lazy("resolve_launcher")

    return resolve_launcher(args.launcher, args.launcher_opts, args.launcher_config)


def _launch(args, planned, choice) -> list:
    """Train ``planned``'s missing runs through launcher ``choice``; print what failed. Returns the failures."""
    failure_report, launch_runs = _lazy("failure_report", "launch_runs")

    outcome = launch_runs(planned, choice, retries=args.retries, data_dir=args.data_dir, strict=args.strict,
                          progress=not args.no_progress, log=lambda m: print(m, flush=True))
    if outcome.failed:
        print(failure_report(outcome.failed), end="", file=sys.stderr, flush=True)
    return outcome.failed


def _add_library_commands(sub) -> None:
    """search, index: query finished runs, embed molecule libraries."""
    p = sub.add_parser("search", help="find molecules for a description, or descriptions for a molecule, with a finished run")
    p.add_argument("run", help=RUN_HELP)
    p.add_argument("query", nargs="?", help="a description: prints the closest molecules")
    p.add_argument("--smiles", help="a molecule: prints the closest descriptions (with --index: the closest library molecules)")
    p.add_argument("--queries", metavar="FILE", help="one description per line; prints each result and p50/p99 latencies")
    p.add_argument("-k", type=int, default=10, help="how many results (default 10)")
    p.add_argument("--index", help="a library index folder, or its name under RUN/indexes (default: the gallery of the run's task)")
    p.add_argument("--nprobe", type=int, help="approximate indexes: IVF lists to visit (hnsw: efSearch); more is slower and more exact")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _add_data_dir(p)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("ensemble", help="fuse finished runs (and scorers) with weights fitted on the held-out pairs; writes a results folder")
    p.add_argument("runs", nargs="+", metavar="RUN", help="finished run folders of one task and data")
    p.add_argument("--scorer", dest="scorers", action="append", default=[], metavar="NAME",
                   help="also fuse this registered scorer, e.g. structure_match (repeatable; `zoo list scorer`)")
    p.add_argument("--reranker", dest="rerankers", action="append", default=[], metavar="NAME",
                   help="re-rank the fused top --rerank-k with this registered re-ranker, e.g. cross_encoder "
                        "(repeatable; `zoo list reranker`; fitted on the training pairs, weighed on the held-out pairs)")
    p.add_argument("--rerank-k", type=int, default=100, help="first-stage candidates re-ranked per query (default 100)")
    p.add_argument("--out", help="ensemble folder (default runs/ensemble-HASH)")
    p.add_argument("--fresh", action="store_true", help="redo a finished ensemble in --out")
    _add_data_dir(p)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")

    p = sub.add_parser("index", help="embed a molecule library with a finished run into a FAISS index for `zoo search`")
    p.add_argument("run", help=RUN_HELP)
    p.add_argument("--molecules", required=True, metavar="FILE",
                   help="SMILES file (.smi/.txt), table with a SMILES column (.tsv/.csv) or .sdf; .gz ok")
    p.add_argument("--out", help="index folder (default RUN/indexes/<file name without extensions>: library.smi -> RUN/indexes/library)")
    p.add_argument("--index-type", default="auto", help="auto (exact up to 200,000 molecules, ivf-sq8 above), flat, ivf-sq8, ivf-pq or hnsw")
    p.add_argument("--workers", type=int, default=1, help="local worker processes embedding chunks in parallel (default 1)")
    p.add_argument("--chunk-size", type=int, default=4096, help="molecules per chunk file, the unit of resume (default 4096)")
    p.add_argument("--batch-size", type=int, default=256, help="molecules per model batch (default 256)")
    p.add_argument("--smiles-column", help="SMILES column of a .tsv/.csv (default: SMILES, canonical_smiles, ...)")
    p.add_argument("--id-column", help="ID column of a .tsv/.csv (default: CID, ID, name, ...; else the row number)")
    p.add_argument("--fresh", action="store_true", help="discard an unfinished or finished build in the output folder")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, ... (auto: worker i uses cuda:i when GPUs are present)")
    p.add_argument("--no-progress", action="store_true")


def _add_serve_command(sub) -> None:
    """serve: a search service and web page over finished runs."""
    p = sub.add_parser("serve", help="serve finished runs over HTTP: a JSON search API and a web page")
    p.add_argument("runs", nargs="+", metavar="RUN", help="finished run, ensemble or fused run folders (the first is the default model)")
    p.add_argument("--index", help="search this library index of each run (a folder, or its name under RUN/indexes) instead of its gallery")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--data-dir", help="ChEBI-20 folder when a gallery is not cached yet (else $ZOO_DATA_DIR, else the user cache)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, ...")
    p.add_argument("--name-timeout", type=float, default=5.0,
                   help="seconds a query's chemical names may take to parse; then it is answered without them (default 5)")


def cmd_list(args) -> int:
    kind = KIND_ALIASES.get(args.kind, args.kind) if args.kind else None
    if kind and kind not in KINDS and args.pattern is None:  # `zoo list 'gr*'`: a pattern without kind
        kind, args.pattern = None, args.kind
    components = list_components(kind, args.pattern)
    if not components:
        what = f"{kind} " if kind else ""
        print(f"zoo: no {what}components match {args.pattern!r}. Kinds: {', '.join(KINDS)}; try `zoo list`.", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([{"kind": c.kind, "name": c.name, "description": c.description, "plugin": c.plugin,
                           "version": c.plugin_version, "config": dict(c.config)} for c in components], indent=2))
        return 0
    current = None
    for c in components:
        if c.kind != current:
            current = c.kind
            print(f"{c.kind}:")
        print(f"  {c.name:<20} {c.description}  [{c.plugin.removeprefix('zoo.plugins.')}]")
    return 0


def cmd_plugins(args) -> int:
    info = plugin_info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for p in info:
        status = f"  FAILED: {p['error']}" if p["error"] else ""
        print(f"{p['name']} {p['version'] or ''} ({p['source']}): {', '.join(p['hooks'])}{status}")
    return 0


def _load(name: str, overrides: Sequence[str]):
    """A composition (or an ensemble composition) with ``--set`` applied, resolved."""
    spec = load_composition(name)
    if overrides:
        spec = spec.with_overrides(list(overrides))
    return spec.resolve()


def cmd_show(args) -> int:
    spec = _load(args.name, args.overrides)
    print(f"# spec hash {spec.hash()}")
    print(spec.to_toml(), end="")
    return 0


def cmd_run(args) -> int:
    if args.workers is not None:
        if args.workers < 1:
            raise RunError(f"--workers must be at least 1 (got {args.workers})")
        os.environ[WORKERS_ENV] = str(args.workers)  # read by zoo.cache.default_workers, inherited by member runs
    spec = _load(args.name, args.overrides)
    RunOptions, run, seed_search_cache = _lazy("RunOptions", "run", "seed_search_cache")

    if isinstance(spec, EnsembleSpec):
        run_ensemble_composition = _lazy("run_ensemble_composition")

        _refuse_under_torchrun(f"run {args.name} (an ensemble composition)")
        print(f"zoo run {spec.name} (ensemble composition, spec hash {spec.hash()})", flush=True)
        launcher = _launcher_choice(args)
        run_ensemble_composition(spec, out=args.out, members_root=args.members_root or "runs", data_dir=args.data_dir,
                                 strict=args.strict, fresh=args.fresh, progress=not args.no_progress,
                                 log=lambda m: print(m, flush=True), launcher=launcher, retries=args.retries)
        return 0
    if args.members_root is not None:
        raise SpecError(f"--members-root: {args.name!r} is not an ensemble composition (it has no member runs)")
    if args.launcher or args.launcher_opts or args.launcher_config:
        raise SpecError(f"--launcher: {args.name!r} is one run, not an ensemble composition; launch a grid with "
                        f"`zoo sweep {args.name} --seeds N --launcher ...`")
    opts = RunOptions(data_dir=args.data_dir, out_dir=args.out, strict=args.strict, fresh=args.fresh,
                      progress=not args.no_progress, download=args.download,
                      log=lambda m: print(m, flush=True), after_test=seed_search_cache)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 alone prints
        print(f"zoo run {spec.name} (spec hash {spec.hash()})", flush=True)
    run(spec, opts)
    return 0


def cmd_eval(args) -> int:
    evaluate_run = _lazy("evaluate_run")

    if args.embeddings is not None or args.task is not None:
        return _eval_external(args)
    if args.run is None:
        raise RunError("zoo eval needs a run folder, or --embeddings FILE.npz --task NAME for an external model")
    if args.overrides or args.name:
        raise RunError("--set and --name go with --embeddings (a run re-evaluates with the options it ran with)")

    evaluate_run(args.run, split=args.split, galleries=args.galleries or ["all", "test"], data_dir=args.data_dir,
                 device=args.device, save_embeddings=args.save_embeddings, out=args.out,
                 progress=not args.no_progress, log=lambda m: print(m, flush=True), precision=args.precision,
                 allow_other_data=args.allow_other_data)
    return 0


def _eval_external(args) -> int:
    """``zoo eval --embeddings FILE.npz --task NAME``: an external model's embeddings scored on a task."""
    default_out, score_embeddings = _lazy("default_out", "score_embeddings")

    if args.run is not None:
        raise RunError(f"--embeddings scores an external model: give no run folder (got {args.run})")
    if args.embeddings is None or args.task is None:
        raise RunError("an external model needs both --embeddings FILE.npz and --task NAME (see `zoo list task`)")
    run_only = (("--save-embeddings", args.save_embeddings), ("--precision/--bf16", args.precision != "auto"),
                ("--allow-other-data", args.allow_other_data))
    for flag, given in run_only:
        if given:
            raise RunError(f"{flag} applies to a run, not to --embeddings")
    options = {}
    for assignment in args.overrides:
        key, sep, raw = assignment.partition("=")
        if not sep or not key.startswith("task.") or "." in key[5:] or not key[5:]:
            raise SpecError(f"--set {assignment}: with --embeddings only task options, e.g. --set task.path=pairs.csv")
        options[key[5:]] = _parse_value(raw.strip(), f"--set {assignment}")
    name = args.name or Path(args.embeddings).name.split(".")[0]
    out = Path(args.out) if args.out else default_out(name)
    if out.is_dir():
        raise OutputPathError(f"--out {out} is a folder; give the results file's path, e.g. {out / 'results.json'}")
    score_embeddings(args.embeddings, args.task, name=name, options=options, data_dir=args.data_dir, split=args.split,
                     galleries=args.galleries or ["all", "test"], out=out, log=lambda m: print(m, flush=True))
    return 0


def cmd_report(args) -> int:
    build_report = _lazy("build_report")

    build_report(args.runs, args.out, samples=args.samples, gallery=args.gallery, seed=args.seed, data_dir=args.data_dir,
                 device=args.device, progress=not args.no_progress, log=lambda m: print(m, flush=True))
    return 0


def _add_table_options(p: argparse.ArgumentParser, metric_help: str) -> None:
    p.add_argument("--direction", default="text_to_molecule", help="text_to_molecule (t2m), molecule_to_text (m2t) or both")
    p.add_argument("--metric", dest="metrics", action="append", metavar="METRIC", help=metric_help)
    p.add_argument("--format", default="markdown", choices=["markdown", "md", "csv", "json"], help="output format (default markdown)")
    p.add_argument("--out", metavar="FILE", help="write the table to FILE (atomically) instead of stdout")


def _check_out(out: str | None, name: str, fmt: str) -> None:
    """Refuse an ``--out`` that is a folder before any work (``name``: the example file name's stem)."""
    if out and Path(out).is_dir():
        example = Path(out) / f"{name}.{'md' if fmt == 'markdown' else fmt}"
        raise OutputPathError(f"--out {out} is a folder; give a file path, e.g. --out {example}")


def _emit(text: str, out: str | None) -> None:
    if out:
        atomic_write_text(out, text)
        print(f"wrote {out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


def _emit_board(board, args, metric: str = "mrr") -> None:
    """A leaderboard's warnings to stderr, its table to stdout or ``--out``, its chart to ``--plot``."""
    plot_leaderboard, render = _lazy("plot_leaderboard", "render")

    for note in board.warnings:
        print(f"zoo: warning: {note}", file=sys.stderr)
    _emit(render(board, args.format), args.out)
    if args.plot:
        print(f"wrote {plot_leaderboard(board, args.plot, metric=metric)}", file=sys.stderr)


def _shipped_runs(runs: list) -> list:
    """The runs whose requested spec is their composition's as installed, at the run's seed (results files
    that predate ``requested_spec_hash`` are matched by their run folder's name, ``NAME-HASH-sSEED``).
    Compatibility shims (CHANGELOG.md): that folder-name match, and ``shipped_spec_hashes`` accepting a run
    spelled as before 0.2 with ``cpu_bf16 = true`` where the composition now asks for ``"auto"``."""
    expected: dict[tuple[str, int], set[str]] = {}
    kept = []
    for run in runs:
        if run.seed is None:
            continue
        key = (run.composition, run.seed)
        if key not in expected:
            expected[key] = shipped_spec_hashes(*key)
        recorded = run.results.get("requested_spec_hash")
        folder = Path(run.source).parent.name
        if (recorded in expected[key] if recorded
                else any(folder == run_folder_name(run.composition, h, run.seed) for h in expected[key])):
            kept.append(run)
    if not kept:
        raise LeaderboardError(f"--shipped: none of the {len(runs)} runs is an installed composition as shipped "
                               f"(compositions present: {', '.join(sorted({r.composition for r in runs})) or 'none'})")
    return kept


def _shipped_specs(name: str) -> list[dict]:
    """The specs composition ``name`` is shipped as (its resolved spec, and the bf16 spelling that
    ``--shipped`` accepts), as results files store them, ``cpu_bf16 = "auto"`` written ``false`` as its
    hash reads it; empty for an ensemble or a name that is not installed (the leaderboard's Markdown
    ``varies`` cell then lists what differs between rows)."""
    try:
        spec = load_composition(name).resolve()
    except ZooError:  # not installed, or no longer resolves: the cell falls back to what varies between rows
        return []
    if isinstance(spec, EnsembleSpec):
        return []
    return [spelling.hashed_dict() for spelling in spec.precision_spellings()]


def cmd_leaderboard(args) -> int:
    build_leaderboard, load_runs = _lazy("build_leaderboard", "load_runs")

    _check_out(args.out, "leaderboard", args.format)
    runs, notes = load_runs(args.paths, strict=args.strict)
    if args.shipped:
        runs = _shipped_runs(runs)
    board = build_leaderboard(runs, gallery=args.gallery, direction=args.direction, metrics=args.metrics,
                              filters=args.filters, composition=args.composition, sort=args.sort, warnings=notes,
                              shipped=_shipped_specs)
    _emit_board(board, args, metric=args.sort)
    return 0


def cmd_ablate(args) -> int:
    ablation_table, build_grid, describe_plan, plan_runs, render_ablation = _lazy(
        "ablation_table", "build_grid", "describe_plan", "plan_runs", "render_ablation")

    _refuse_under_torchrun("ablate")
    _check_out(args.out, "ablation", args.format)
    choice = _launcher_choice(args)
    configs = build_grid(args.name, args.varies, args.overrides, one_at_a_time=args.one_at_a_time)
    planned = plan_runs(configs, args.seeds, args.out_root or f"runs/ablate-{configs[0].spec.name}", folds=args.folds)
    print(describe_plan(planned), end="", flush=True)
    if args.dry_run:
        return 0
    failed = _launch(args, planned, choice)
    table = ablation_table(planned, metrics=args.metrics or ["mrr"], gallery=args.gallery, direction=args.direction)
    _emit(render_ablation(table, args.format), args.out)
    return 1 if failed else 0


def _refuse_under_torchrun(command: str) -> None:
    if launched_distributed():
        raise RunError(f"zoo {command} runs many trainings one after another in one process; launch it without torchrun "
                       "(use torchrun for a single `zoo run`)")


def cmd_sweep(args) -> int:
    describe_plan, read_json = _lazy("describe_plan", "read_json")
    RunRecord, build_leaderboard = _lazy("RunRecord", "build_leaderboard")
    ablation_table, plan_sweep, render_ablation = _lazy("ablation_table", "plan_sweep", "render_ablation")

    _refuse_under_torchrun("sweep")
    _check_out(args.out, "leaderboard", args.format)
    choice = _launcher_choice(args)
    planned = plan_sweep(args.names, args.seeds, args.overrides, args.out_root, folds=args.folds)
    print(describe_plan(planned), end="", flush=True)
    if args.dry_run:
        return 0
    failed = _launch(args, planned, choice)
    if args.folds:  # selection: the held-out MRR across folds, the first composition the reference; never test
        _emit(render_ablation(ablation_table(planned), args.format), args.out)
        return 1 if failed else 0
    runs = [RunRecord.from_results(read_json(p.results_path), str(p.results_path)) for p in planned if p.done]
    if not runs:
        raise RunError(f"no run of this sweep finished ({len(failed)} failed; see above)")
    board = build_leaderboard(runs, gallery=args.gallery, direction=args.direction, metrics=args.metrics)
    _emit_board(board, args)
    return 1 if failed else 0


def cmd_search(args) -> int:
    open_searcher = _lazy("open_searcher")
    check_query, format_result, latency_summary, read_queries = _lazy("check_query", "format_result", "latency_summary", "read_queries")

    given = [x for x in (args.query, args.smiles, args.queries) if x is not None]
    if len(given) != 1:
        raise RunError("give exactly one of: a description QUERY, --smiles SMILES, or --queries FILE")
    if args.queries is None:
        check_query(given[0], "--smiles" if args.smiles is not None else "query")
    if args.k < 1:
        raise RunError(f"-k must be at least 1 (got {args.k})")
    if args.nprobe is not None and args.nprobe < 1:
        raise RunError(f"--nprobe must be at least 1 (got {args.nprobe})")
    queries = read_queries(args.queries) if args.queries else None
    searcher = open_searcher(args.run, index=args.index, data_dir=args.data_dir, device=args.device, nprobe=args.nprobe,
                        progress=not args.no_progress, log=lambda m: print(m, file=sys.stderr, flush=True))
    if queries is None:
        result = searcher.smiles(args.smiles, args.k) if args.smiles is not None else searcher.text(args.query, args.k)
        print(json.dumps({"run": args.run, **result}, indent=2) if args.json else format_result(result))
        return 0
    results = [searcher.text(q, args.k) for q in queries]
    latency = latency_summary(results)
    if args.json:
        print(json.dumps({"run": args.run, "searched": searcher.searched, "latency_ms": latency, "queries": results}, indent=2))
    else:
        print("\n\n".join(format_result(r) for r in results))
    print(f"{len(results)} queries against the {searcher.searched}: " + ", ".join(
        f"{part} p50 {v['p50']:.1f} ms p99 {v['p99']:.1f} ms" for part, v in latency.items()), file=sys.stderr)
    return 0


def cmd_serve(args) -> int:
    """Load and check every run before the port is bound; serve until Ctrl-C or SIGTERM."""
    serve_runs = _lazy("serve_runs")

    if not 0 <= args.port <= 65535:
        raise RunError(f"--port must be between 0 and 65535 (got {args.port})")
    if args.name_timeout <= 0:
        raise RunError(f"--name-timeout must be positive (got {args.name_timeout})")
    serve_runs(args.runs, index=args.index, host=args.host, port=args.port, data_dir=args.data_dir, device=args.device,
               name_timeout=args.name_timeout, log=lambda m: print(m, file=sys.stderr, flush=True))
    return 0


def cmd_ensemble(args) -> int:
    build_ensemble = _lazy("build_ensemble")

    if args.rerankers and args.rerank_k < 2:
        raise SpecError(f"--rerank-k must be at least 2, got {args.rerank_k}")
    build_ensemble(args.runs, args.scorers, out=args.out, fresh=args.fresh, data_dir=args.data_dir, device=args.device,
                   rerankers=args.rerankers, rerank_k=args.rerank_k, log=lambda m: print(m, flush=True))
    return 0


def cmd_index(args) -> int:
    build_index = _lazy("build_index")

    build_index(args.run, args.molecules, out=args.out, index_type=args.index_type, workers=args.workers,
                chunk_size=args.chunk_size, batch_size=args.batch_size, smiles_column=args.smiles_column,
                id_column=args.id_column, fresh=args.fresh, device=args.device, progress=not args.no_progress,
                log=lambda m: print(m, flush=True))
    return 0


COMMANDS = {"list": cmd_list, "plugins": cmd_plugins, "show": cmd_show, "run": cmd_run, "eval": cmd_eval,
            "report": cmd_report, "leaderboard": cmd_leaderboard, "ablate": cmd_ablate, "sweep": cmd_sweep, "search": cmd_search,
            "index": cmd_index, "ensemble": cmd_ensemble, "serve": cmd_serve}


class Terminated(KeyboardInterrupt):
    """SIGTERM (e.g. a batch scheduler's time limit), raised like Ctrl-C so the same cleanup and advice apply."""


def _on_sigterm(signum, frame) -> None:  # noqa: ARG001 - the signal handler signature
    raise Terminated


#: What survives an interruption, per command.
RESUME_HINTS = {
    "run": " Checkpoints are written after each epoch: rerun the same command to resume.",
    "sweep": " Finished runs are kept and checkpoints are written after each epoch: rerun the same command to resume.",
    "ablate": " Finished runs are kept and checkpoints are written after each epoch: rerun the same command to resume.",
    "index": " Finished chunks are kept: rerun the same command to resume the build.",
    "serve": " The server stopped after finishing the requests in flight.",
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 0
    warnings.filterwarnings("ignore", category=FutureWarning)
    exit_with_parent()  # a launcher's job: stop when the process that started it is gone
    with _sigterm_as_interrupt(), _zoo_warnings_on_one_line():
        return _dispatch(args)


def _dispatch(args) -> int:
    """Run the command; user and environment errors become one line and exit 2 (a traceback with
    ``ZOO_DEBUG=1``), interruptions exit 130 (SIGINT) or 143 (SIGTERM) with what to do next."""
    try:
        return COMMANDS[args.command](args)
    except BrokenPipeError:  # `zoo show aman | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt as exc:
        what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        print(f"\nzoo: {what}.{RESUME_HINTS.get(args.command, '')}", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except ZooError as exc:  # the message is the whole story
        if debug_enabled():
            raise
        print(f"zoo: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001
        if debug_enabled():
            raise
        print(f"zoo: internal error: {type(exc).__name__}: {exc}. This is a bug: rerun with {DEBUG_ENV}=1 "
              "for the traceback and report it.", file=sys.stderr)
        return 1


@contextmanager
def _sigterm_as_interrupt():
    """SIGTERM raises :class:`Terminated` in the main thread while a command runs (then the old handler is back)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _zoo_warnings_on_one_line():
    """molzoo's own warnings (e.g. a plugin that failed to load, a file loaded unverified) as
    ``zoo: warning: ...``, not file:line + source."""
    original = warnings.formatwarning

    def format_warning(message, category, filename, lineno, line=None):
        if issubclass(category, (PluginLoadWarning, UnverifiedFileWarning)):
            return f"zoo: warning: {message}\n"
        return original(message, category, filename, lineno, line)

    warnings.formatwarning = format_warning
    try:
        yield
    finally:
        warnings.formatwarning = original


if __name__ == "__main__":
    sys.exit(main())
