"""The ``zoo`` command line, called in-process through ``zoo.cli.main`` (plus two subprocess checks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib

import pytest

from zoo.cli import main
from zoo.registry import KINDS
from zoo.spec import EnsembleSpec, load_composition, load_spec

BUILTIN_PLUGINS = {
    "zoo.plugins.text": "register_text_encoders",
    "zoo.plugins.molecule": "register_molecule_encoders",
    "zoo.plugins.align": "register_aligners",
    "zoo.plugins.loss": "register_losses",
    "zoo.plugins.compositions": "register_compositions",
    "zoo.plugins.tasks": "register_tasks",
    "zoo.plugins.scorers": "register_scorers",
}


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_cli_error(capsys, *argv: str) -> tuple[int, str, str]:
    """Run a command that should fail cleanly: a return code, or argparse's SystemExit."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def _listed(out: str) -> dict[str, set[str]]:
    """``{kind: {names}}`` from the human-readable ``zoo list`` output."""
    found: dict[str, set[str]] = {}
    kind = None
    for line in out.splitlines():
        if line and not line.startswith(" "):
            kind = line.rstrip(":")
            found[kind] = set()
        elif line.strip():
            found[kind].add(line.split()[0])
    return found


# -- list ----------------------------------------------------------------------------------
def test_list_all_kinds(capsys):
    code, out, _ = run_cli(capsys, "list")
    assert code == 0
    listed = _listed(out)
    assert set(KINDS) <= set(listed)
    assert {"scibert", "minilm", "hf"} <= listed["text_encoder"]
    assert "graph_transformer" in listed["molecule_encoder"]
    assert "adversarial" in listed["aligner"]
    assert "triplet" in listed["loss"]
    assert "aman" in listed["composition"]
    assert "chebi20" in listed["task"]
    assert "[text]" in out  # the registering plugin is shown


@pytest.mark.parametrize("kind", ["molecule_encoder", "molecule_encoders"])
def test_list_one_kind(capsys, kind):
    code, out, _ = run_cli(capsys, "list", kind)
    assert code == 0
    listed = _listed(out)
    assert set(listed) == {"molecule_encoder"}
    assert "graph_transformer" in listed["molecule_encoder"]


def test_list_pattern_without_kind(capsys):
    code, out, _ = run_cli(capsys, "list", "graph*")
    assert code == 0
    listed = _listed(out)
    assert listed == {"molecule_encoder": {"graph_transformer"}}


def test_list_kind_and_pattern(capsys):
    code, out, _ = run_cli(capsys, "list", "text_encoder", "m*")
    assert code == 0
    assert _listed(out) == {"text_encoder": {"minilm"}}


def test_list_json(capsys):
    code, out, _ = run_cli(capsys, "list", "--json")
    assert code == 0
    rows = json.loads(out)
    assert {r["kind"] for r in rows} == set(KINDS)
    by_name = {(r["kind"], r["name"]): r for r in rows}
    triplet = by_name[("loss", "triplet")]
    assert triplet["plugin"] == "zoo.plugins.loss"
    assert triplet["config"]["margin"] == pytest.approx(0.2)
    assert set(triplet) >= {"kind", "name", "description", "plugin", "version", "config"}


def test_list_json_filtered(capsys):
    code, out, _ = run_cli(capsys, "list", "text_encoder", "--json")
    assert code == 0
    assert {r["name"] for r in json.loads(out)} >= {"scibert", "minilm", "hf"}
    assert {r["kind"] for r in json.loads(out)} == {"text_encoder"}


# -- plugins -------------------------------------------------------------------------------
def test_plugins_json(capsys):
    code, out, _ = run_cli(capsys, "plugins", "--json")
    assert code == 0
    info = {p["name"]: p for p in json.loads(out)}
    for name, hook in BUILTIN_PLUGINS.items():
        assert name in info, name
        assert hook in info[name]["hooks"]
        assert info[name]["error"] is None
        assert info[name]["source"] == "builtin"


def test_plugins_text(capsys):
    code, out, _ = run_cli(capsys, "plugins")
    assert code == 0
    assert "zoo.plugins.text" in out and "register_text_encoders" in out


# -- show ----------------------------------------------------------------------------------
def _show(capsys, *argv):
    code, out, err = run_cli(capsys, "show", *argv)
    assert code == 0, err
    first, _, body = out.partition("\n")
    assert first.startswith("# spec hash ")
    return first.removeprefix("# spec hash ").strip(), tomllib.loads(body)


def test_show_aman(capsys):
    digest, data = _show(capsys, "aman")
    spec = load_spec("aman")
    assert digest == spec.hash()
    assert data["name"] == "aman"
    assert data["text_encoder"]["name"] == "combined"
    scibert, tfidf, names = data["text_encoder"]["parts"]
    assert (scibert["name"], tfidf["name"], names["name"]) == ("scibert", "tfidf", "chem_names")
    # resolved: registered defaults are spelled out
    assert data["loss"]["margin"] == pytest.approx(0.2)
    assert scibert["model"] == "allenai/scibert_scivocab_uncased"
    assert set(data) >= {"text_encoder", "molecule_encoder", "aligner", "loss", "train", "eval"}


def test_show_every_shipped_composition(capsys):
    from zoo.registry import list_components

    shipped = sorted(c.name for c in list_components("composition") if c.plugin == "zoo.plugins.compositions")
    assert {"aman", "text2mol_mlp", "text2mol_gcn", "text2mol_attention", "gt_infonce"} <= set(shipped)
    for name in shipped:
        digest, data = _show(capsys, name)
        spec = load_composition(name)
        assert digest == spec.hash() and data["name"] == spec.name  # an alias (best) shows its target
        if isinstance(spec, EnsembleSpec):  # its members are shipped compositions
            assert data["members"] and set(data["members"]) <= set(shipped)
        else:
            assert all(data[slot]["name"] for slot in ("text_encoder", "molecule_encoder", "aligner", "loss"))


def test_show_with_overrides(capsys):
    digest, data = _show(capsys, "aman", "--set", "loss.margin=0.3", "--set", "text_encoder=minilm")
    assert data["loss"]["margin"] == pytest.approx(0.3)
    assert data["text_encoder"]["name"] == "minilm"
    assert "model" not in data["text_encoder"]
    assert digest != load_spec("aman").hash()


def test_show_output_reloads_to_same_hash(capsys, tmp_path):
    code, text, _ = run_cli(capsys, "show", "aman", "--set", "train.epochs=5")
    assert code == 0
    digest = text.partition("\n")[0].removeprefix("# spec hash ")
    path = tmp_path / "spec.toml"
    path.write_text(text, encoding="utf-8")  # the comment line is valid TOML too
    digest2, data = _show(capsys, str(path))
    assert digest2 == digest and data["train"]["epochs"] == 5


def test_show_unknown_option(capsys):
    code, out, err = run_cli_error(capsys, "show", "aman", "--set", "loss.margn=1")
    assert code == 2
    assert "margn" in err and "margin" in err
    assert err.startswith("zoo: error:")
    assert out == ""


def test_show_unknown_composition(capsys):
    code, _, err = run_cli_error(capsys, "show", "nope")
    assert code == 2
    assert "Did you mean" in err or "Available" in err
    assert "nope" in err


def test_show_missing_file(capsys, tmp_path):
    code, _, err = run_cli_error(capsys, "show", str(tmp_path / "missing.toml"))
    assert code == 2 and "not found" in err


def test_run_bad_override(capsys, tmp_path):
    code, out, err = run_cli_error(capsys, "run", "aman", "--set", "train.epochs=abc", "--out", str(tmp_path / "run"))
    assert code == 2
    assert "train.epochs" in err
    assert not (tmp_path / "run").exists()  # fails before any work


def test_run_unknown_component(capsys, tmp_path):
    code, _, err = run_cli_error(capsys, "run", "aman", "--set", "text_encoder=minilmm", "--out", str(tmp_path / "run"))
    assert code == 2 and "Did you mean: minilm" in err


def test_no_command_prints_help(capsys):
    code, out, _ = run_cli(capsys)
    assert code == 0 and "usage: zoo" in out


def test_unknown_command_is_usage_error(capsys):
    code, _, err = run_cli_error(capsys, "frobnicate")
    assert code == 2 and "invalid choice" in err


# -- subprocess ----------------------------------------------------------------------------
def _env():
    return {**os.environ, "PYTHONWARNINGS": "ignore"}


def test_console_script_help():
    zoo = os.path.join(os.path.dirname(sys.executable), "zoo")
    cmd = [zoo] if os.path.exists(zoo) else [sys.executable, "-m", "zoo.cli"]
    proc = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=60, env=_env())
    assert proc.returncode == 0, proc.stderr
    assert "usage: zoo" in proc.stdout and "list" in proc.stdout


def test_list_does_not_import_torch():
    code = (
        "import sys; from zoo.cli import main; rc = main(['list']); "
        "heavy = [m for m in ('torch', 'transformers', 'torch_geometric', 'rdkit') if m in sys.modules]; "
        "assert rc == 0 and not heavy, heavy"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=_env())
    assert proc.returncode == 0, proc.stderr
    assert "graph_transformer" in proc.stdout


def test_list_with_no_match_says_so(capsys):
    assert main(["list", "nope"]) == 1
    err = capsys.readouterr().err
    assert "no components match 'nope'" in err and "text_encoder" in err
