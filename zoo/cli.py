"""The ``zoo`` command line. Heavy libraries are imported only by the commands that need them."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from typing import Sequence

from zoo import __version__

KIND_ALIASES = {
    "text_encoders": "text_encoder", "text": "text_encoder",
    "molecule_encoders": "molecule_encoder", "molecule": "molecule_encoder",
    "aligners": "aligner", "losses": "loss", "compositions": "composition", "tasks": "task",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zoo", description="molzoo: compose, train and evaluate text<->molecule retrieval models.")
    parser.add_argument("--version", action="version", version=f"molzoo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("list", help="list registered components")
    p.add_argument("kind", nargs="?", help="text_encoder, molecule_encoder, aligner, loss, composition or task")
    p.add_argument("pattern", nargs="?", help="wildcard filter on names, e.g. 'graph*'")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("plugins", help="list loaded plugins with versions and hooks")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("show", help="print a composition's resolved spec as TOML")
    p.add_argument("name", help="composition name or spec .toml file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")

    p = sub.add_parser("run", help="train and evaluate a composition, write results JSON")
    p.add_argument("name", help="composition name (e.g. aman) or spec .toml file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override: slot=component, slot.option=value, train.key=value (repeatable)")
    p.add_argument("--data-dir", help="ChEBI-20 folder (else $ZOO_DATA_DIR, else the user cache)")
    p.add_argument("--download", action="store_true", help="download ChEBI-20 into the user cache if missing")
    p.add_argument("--out", help="run folder (default runs/NAME-HASH-sSEED)")
    p.add_argument("--strict", action="store_true", help="refuse to substitute an unavailable component (e.g. SciBERT offline)")
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint/results in the run folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")

    p = sub.add_parser("eval", help="evaluate a finished run's best checkpoint without retraining")
    p.add_argument("run", help="run folder (holds results.json and checkpoint/)")
    p.add_argument("--split", default="test", help="test (default) or heldout")
    p.add_argument("--gallery", dest="galleries", action="append", metavar="G",
                   help="all, test or inbatch:N (repeatable; default: all and test)")
    p.add_argument("--data-dir", help="ChEBI-20 folder (else $ZOO_DATA_DIR, else the user cache)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--save-embeddings", metavar="DIR", help="write query/candidate embeddings with CIDs as .npz")
    p.add_argument("--out", help="results file (default RUN/eval-SPLIT.json)")
    p.add_argument("--no-progress", action="store_true")
    return parser


def cmd_list(args) -> int:
    from zoo.registry import KINDS, list_components

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
    from zoo.registry import plugin_info

    info = plugin_info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for p in info:
        status = f"  FAILED: {p['error']}" if p["error"] else ""
        print(f"{p['name']} {p['version'] or ''} ({p['source']}): {', '.join(p['hooks'])}{status}")
    return 0


def _load(name: str, overrides: Sequence[str]):
    from zoo.spec import load_spec

    spec = load_spec(name)
    if overrides:
        spec = spec.with_overrides(list(overrides))
    return spec.resolve()


def cmd_show(args) -> int:
    spec = _load(args.name, args.overrides)
    print(f"# spec hash {spec.hash()}")
    print(spec.to_toml(), end="")
    return 0


def cmd_run(args) -> int:
    spec = _load(args.name, args.overrides)
    from zoo.train import RunOptions, run

    opts = RunOptions(data_dir=args.data_dir, out_dir=args.out, strict=args.strict, fresh=args.fresh,
                      progress=not args.no_progress, download=args.download,
                      log=lambda m: print(m, flush=True))
    print(f"zoo run {spec.name} (spec hash {spec.hash()})", flush=True)
    run(spec, opts)
    return 0


def cmd_eval(args) -> int:
    from zoo.eval_run import evaluate_run

    evaluate_run(args.run, split=args.split, galleries=args.galleries or ["all", "test"], data_dir=args.data_dir,
                 device=args.device, save_embeddings=args.save_embeddings, out=args.out,
                 progress=not args.no_progress, log=lambda m: print(m, flush=True))
    return 0


COMMANDS = {"list": cmd_list, "plugins": cmd_plugins, "show": cmd_show, "run": cmd_run, "eval": cmd_eval}


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions whose message is the whole story (no traceback)."""
    from zoo.registry import ComponentError

    errors: list[type[BaseException]] = [ComponentError]
    for module, name in [("zoo.data", "DataError"), ("zoo.train", "RunError"), ("zoo.plugins.hf_text", "TextEncoderUnavailable"),
                         ("zoo.featurize", "SmilesError"), ("zoo.cache", "FeaturizeError")]:
        mod = sys.modules.get(module)
        if mod is not None:
            errors.append(getattr(mod, name))
    return tuple(errors)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 0
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        return COMMANDS[args.command](args)
    except BrokenPipeError:  # `zoo show aman | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("\nzoo: interrupted. Checkpoints are written after each epoch: rerun the same command to resume.", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001
        if isinstance(exc, _user_errors()):
            print(f"zoo: error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
