"""One error hierarchy: every error molzoo raises on purpose is a ZooError from zoo/errors.py, and the
CLI reports exactly those in one line."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from zoo import cli, errors

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["zoo", "registry", "plugins", "evals"]


def _exception_classes() -> list[type]:
    return [obj for _, obj in inspect.getmembers(errors, inspect.isclass) if obj.__module__ == "zoo.errors"]


def test_every_class_is_a_zoo_error_or_warning():
    classes = _exception_classes()
    assert len(classes) >= 17
    for cls in classes:
        assert issubclass(cls, (errors.ZooError, errors.ZooWarning)), cls


@pytest.mark.parametrize("cls, base", [
    (errors.ComponentError, ValueError), (errors.SpecError, errors.ComponentError), (errors.DataError, ValueError),
    (errors.UnknownComponentError, KeyError), (errors.RunError, RuntimeError), (errors.FitError, errors.RunError),
    (errors.TextEncoderUnavailable, RuntimeError), (errors.SmilesError, ValueError), (errors.LeaderboardError, ValueError),
    (errors.PluginLoadWarning, UserWarning), (errors.DataWarning, UserWarning), (errors.SubstitutionWarning, UserWarning),
])
def test_builtin_bases_kept(cls, base):
    assert issubclass(cls, base)


def test_unknown_component_message_is_not_quoted():
    assert str(errors.UnknownComponentError("unknown loss 'x'.")) == "unknown loss 'x'."


def test_no_error_class_outside_errors_module():
    """A new error or warning class belongs in zoo/errors.py (so the CLI catches it by ZooError)."""
    found = []
    for folder in SOURCES:
        for path in (ROOT / folder).rglob("*.py"):
            if path == ROOT / "zoo" / "errors.py" or "examples" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ClassDef):
                    bases = [ast.unparse(b) for b in node.bases]
                    if any(b.endswith(("Error", "Exception", "Warning")) for b in bases):
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert found == []


def test_cli_reports_any_zoo_error_in_one_line(monkeypatch, capsys):
    class Custom(errors.ZooError):
        pass

    def boom(args):
        raise Custom("something the user can fix")

    monkeypatch.setitem(cli.COMMANDS, "list", boom)
    monkeypatch.delenv("ZOO_DEBUG", raising=False)
    assert cli.main(["list"]) == 2
    assert capsys.readouterr().err == "zoo: error: something the user can fix\n"


def test_cli_reports_other_exceptions_as_bugs(monkeypatch, capsys):
    def boom(args):
        raise ValueError("oops")

    monkeypatch.setitem(cli.COMMANDS, "list", boom)
    monkeypatch.delenv("ZOO_DEBUG", raising=False)
    assert cli.main(["list"]) == 1
    assert "zoo: internal error: ValueError: oops. This is a bug" in capsys.readouterr().err
