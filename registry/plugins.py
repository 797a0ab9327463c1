"""The plugin manager: built-in plugins, entry points, enabling/disabling, the catalog."""

from __future__ import annotations

import importlib
import os
import sys
import sysconfig
import traceback
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

import zoo.registry.hookspecs as hookspecs
from zoo import DEBUG_ENV, __version__, debug_enabled
from zoo.errors import ComponentError, PluginLoadWarning
from zoo.registry.catalog import KINDS, Catalog, Component, did_you_mean

ENTRY_POINT_GROUP = "molzoo"

#: Built-in plugins: modules registered through the same hooks a third-party package uses.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "zoo.plugins.text",
    "zoo.plugins.molecule",
    "zoo.plugins.align",
    "zoo.plugins.loss",
    "zoo.plugins.compositions",
    "zoo.plugins.tasks",
    "zoo.plugins.scorers",
    "zoo.core_components",  # what core registers itself (the ``run`` scorer loads a finished run)
    "zoo.plugins.launchers",
    "zoo.plugins.rerankers",
)

#: Names the built-in plugins had before ``plugins/`` was grouped by kind; still accepted in
#: ``ZOO_DISABLE_PLUGINS`` (short or as ``zoo.plugins.<old name>``). Compatibility shim: molzoo 0.1 named
#: them so; 0.2 renamed them (CHANGELOG.md) and keeps accepting the 0.1 names.
FORMER_BUILTIN_NAMES: dict[str, str] = {
    "text_encoders": "text", "molecule_encoders": "molecule", "aligners": "align", "losses": "loss",
}

#: Comma-separated plugin names that are not loaded (like pytest's ``-p no:NAME``): entry-point
#: names, or built-in ones, in full (``zoo.plugins.text``) or short (``text``, ``molecule``, ``align``,
#: ``loss``, ``compositions``, ``tasks``, ``scorers``).
DISABLE_ENV = "ZOO_DISABLE_PLUGINS"
#: If set, only these entry-point plugins load (built-ins always load unless disabled).
ALLOW_ENV = "ZOO_PLUGINS"
#: If set to 1, a plugin that fails to load is fatal instead of a warning.
STRICT_ENV = "ZOO_STRICT_PLUGINS"


@dataclass
class PluginRecord:
    name: str
    source: str  # "builtin" or "entry point <dist>"
    version: str | None
    hooks: list[str] = field(default_factory=list)
    error: str | None = None


_state: dict[str, Any] = {"pm": None, "catalog": None, "records": None}


def _env_names(var: str) -> set[str] | None:
    value = os.environ.get(var)
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


def _current_name(name: str) -> str:
    """A built-in plugin's current short name for one of its former names; other names unchanged."""
    short = name.removeprefix("zoo.plugins.")
    return FORMER_BUILTIN_NAMES.get(short, name)


def _strict() -> bool:
    return os.environ.get(STRICT_ENV, "").lower() in {"1", "true", "yes"}


def failure_location(exc: BaseException) -> str | None:
    """``file:line`` where ``exc`` happened: a syntax error's position, else the innermost frame of its
    traceback outside Python's own library (importlib, importlib.metadata); ``None`` if all are there."""
    if isinstance(exc, SyntaxError) and exc.filename and exc.lineno:
        return f"{exc.filename}:{exc.lineno}"
    stdlib = os.path.join(sysconfig.get_paths()["stdlib"], "")

    def ours(filename: str) -> bool:  # Python's import machinery and this module only pass the error on
        in_stdlib = filename.startswith(stdlib) and "-packages" not in filename[len(stdlib):]
        return filename.startswith("<") or in_stdlib or filename == __file__

    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not ours(f.filename)]
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else None


def _fail(record: PluginRecord, message: str, exc: BaseException | None = None) -> None:
    where = failure_location(exc) if exc is not None else None
    if where:
        message = f"{message} (at {where})"
    record.error = message
    if exc is not None and debug_enabled():
        traceback.print_exception(exc, file=sys.stderr)
    if _strict():
        raise ComponentError(f"{message} ({STRICT_ENV} is set)") from exc
    hint = "" if exc is None or debug_enabled() else f", {DEBUG_ENV}=1 to see the traceback"
    warnings.warn(f"{message}; continuing without it (set {STRICT_ENV}=1 to make this fatal{hint})", PluginLoadWarning,
                  stacklevel=3)


def _warn_unknown_names(var: str, names: set[str], known: set[str], what: str, also: set[str] = frozenset()) -> None:
    """A one-line warning per name in ``$var`` that is neither in ``known`` (listed as close matches)
    nor in ``also`` (accepted quietly): a typo would otherwise be ignored."""
    for name in sorted(names - known - also):
        warnings.warn(f"{var}: no {what} named {name!r}.{did_you_mean(name, sorted(known))} "
                      f"Known: {', '.join(sorted(known)) or '(none)'}", PluginLoadWarning, stacklevel=3)


def get_plugin_manager() -> pluggy.PluginManager:
    """The plugin manager with built-ins and entry-point plugins registered."""
    if _state["pm"] is None:
        _build()
    return _state["pm"]


def _build() -> None:
    pm = pluggy.PluginManager("molzoo")
    pm.add_hookspecs(hookspecs)
    given_disabled = _env_names(DISABLE_ENV) or set()
    disabled = given_disabled | {_current_name(name) for name in given_disabled}
    allowed = _env_names(ALLOW_ENV)
    records: list[PluginRecord] = []

    for module_name in DEFAULT_PLUGINS:
        if module_name in disabled or module_name.rsplit(".", 1)[-1] in disabled:
            continue
        record = PluginRecord(module_name, "builtin", __version__)
        records.append(record)
        try:
            pm.register(importlib.import_module(module_name), name=module_name)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not take the others down
            _fail(record, f"built-in plugin {module_name!r} failed to load: {exc}", exc)

    entry_points = sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
    plugin_names = {ep.name for ep in entry_points}
    former = {*FORMER_BUILTIN_NAMES, *(f"zoo.plugins.{name}" for name in FORMER_BUILTIN_NAMES)}
    _warn_unknown_names(DISABLE_ENV, given_disabled, plugin_names | {name.rsplit(".", 1)[-1] for name in DEFAULT_PLUGINS},
                        "plugin", also=set(DEFAULT_PLUGINS) | former)
    _warn_unknown_names(ALLOW_ENV, allowed or set(), plugin_names, "installed entry-point plugin")
    for ep in entry_points:
        if ep.name in disabled or (allowed is not None and ep.name not in allowed):
            continue
        dist = getattr(ep, "dist", None)
        record = PluginRecord(ep.name, f"entry point {dist.name if dist else ep.value}", dist.version if dist else None)
        records.append(record)
        if pm.get_plugin(ep.name) is not None:
            _fail(record, f"plugin name {ep.name!r} is already taken")
            continue
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception as exc:  # noqa: BLE001
            _fail(record, f"plugin {ep.name!r} ({ep.value}) failed to load: {type(exc).__name__}: {exc}", exc)

    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise ComponentError(f"a plugin implements a hook molzoo does not define: {exc}") from exc

    for record in records:
        plugin = pm.get_plugin(record.name)
        if plugin is not None:
            record.hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])
    _state.update(pm=pm, records=records, catalog=None)


def load_plugins() -> Catalog:
    """Call every registration hook once and return the filled catalog."""
    if _state["catalog"] is not None:
        return _state["catalog"]
    pm = get_plugin_manager()
    catalog = Catalog()
    versions = {r.name: r.version for r in _state["records"]}
    for kind, hook_name in KINDS.items():
        caller = getattr(pm.hook, hook_name)
        for impl in caller.get_hookimpls():
            plugin_name = impl.plugin_name

            def register(
                name: str,
                factory: Any,
                description: str = "",
                config: Mapping[str, Any] | None = None,
                *,
                _kind: str = kind,
                _plugin: str = plugin_name,
            ) -> None:
                catalog.add(
                    Component(
                        kind=_kind,
                        name=name,
                        factory=factory,
                        description=description,
                        stated_config=None if config is None else dict(config),
                        plugin=_plugin,
                        plugin_version=versions.get(_plugin),
                    )
                )

            try:
                impl.function(register=register)
            except ComponentError:
                raise
            except Exception as exc:  # noqa: BLE001
                _fail(_record(plugin_name), f"plugin {plugin_name!r} failed in {hook_name}: {type(exc).__name__}: {exc}", exc)
    _state["catalog"] = catalog
    return catalog


def _record(name: str) -> PluginRecord:
    """The record of plugin ``name``; one is made for a plugin registered on the manager at runtime."""
    for record in _state["records"]:
        if record.name == name:
            return record
    plugin = _state["pm"].get_plugin(name)
    hooks = sorted(c.name for c in _state["pm"].get_hookcallers(plugin) or []) if plugin is not None else []
    record = PluginRecord(name, "registered at runtime", None, hooks)
    _state["records"].append(record)
    return record


def get_component(kind: str, name: str) -> Component:
    """The registered component ``name`` of ``kind`` (loads plugins on first use)."""
    return load_plugins().get(kind, name)


def list_components(kind: str | None = None, pattern: str | None = None) -> list[Component]:
    """Registered components, optionally of one kind and matching a wildcard pattern."""
    return load_plugins().list(kind, pattern)


def plugin_info() -> list[dict[str, Any]]:
    """What loaded: name, source, version, hooks, error."""
    pm = get_plugin_manager()
    for name, plugin in pm.list_name_plugin():
        if plugin is not None:
            _record(name)
    return [
        {"name": r.name, "source": r.source, "version": r.version, "hooks": r.hooks, "error": r.error}
        for r in _state["records"]
    ]


def reset_registry() -> None:
    """Forget loaded plugins (tests, or after changing the environment variables)."""
    _state.update(pm=None, catalog=None, records=None)
