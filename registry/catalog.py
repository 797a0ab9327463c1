"""Components by kind and name: what a registration holds and how it is looked up.

This module knows nothing of plugins; :mod:`zoo.registry.plugins` fills a :class:`Catalog`.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from zoo.errors import ComponentError, DuplicateComponentError, UnknownComponentError, UnknownOptionError

#: Component kinds and the hook that registers each.
KINDS: dict[str, str] = {
    "text_encoder": "register_text_encoders",
    "molecule_encoder": "register_molecule_encoders",
    "aligner": "register_aligners",
    "loss": "register_losses",
    "composition": "register_compositions",
    "task": "register_tasks",
    "scorer": "register_scorers",
    "launcher": "register_launchers",
    "reranker": "register_rerankers",
}


#: Kinds whose options are the keyword parameters with defaults of the factory's signature, unless the
#: registration states ``config``: encoders, aligners and losses (``factory(embed_dim=..., **options)``)
#: and scorers, launchers and re-rankers (``factory(**options)``).
COMPONENT_KINDS = ("text_encoder", "molecule_encoder", "aligner", "loss", "scorer", "launcher", "reranker")

#: Factory arguments the assembly passes itself (never spec options).
CONTEXT_ARGUMENTS = frozenset({"embed_dim"})

#: Arguments of a task's ``load`` that the harness passes itself (never ``[task]`` options): the data
#: location, ``--download`` and the spec's ``train.holdout_fraction``.
TASK_LOADER_ARGUMENTS = frozenset({"data_dir", "download", "holdout_fraction"})

F = TypeVar("F", bound=Callable[..., Any])


def passes_options_to(target: Callable[..., Any], exclude: tuple[str, ...] = ()) -> Callable[[F], F]:
    """Decorator for a factory that forwards ``**options`` to ``target`` (e.g. a function choosing a
    model for a shared class): its options are its own keyword defaults, then ``target``'s (less
    ``exclude``), so the defaults stay stated once, in ``target``'s signature."""

    def mark(factory: F) -> F:
        factory.__molzoo_options_from__ = (target, tuple(exclude))  # type: ignore[attr-defined]
        return factory

    return mark


def options_of(factory: Callable[..., Any]) -> dict[str, Any]:
    """The options ``factory`` states in its signature (a class: its ``__init__``): every parameter that
    can be passed by keyword and has a default, in order, except :data:`CONTEXT_ARGUMENTS`; followed,
    when it forwards ``**options`` (:func:`passes_options_to`), by its target's. A tuple default is given
    as a list, like TOML and JSON arrays, so that a resolved spec equals its TOML round trip."""
    params = inspect.signature(factory).parameters.values()
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    options = {p.name: list(p.default) if isinstance(p.default, tuple) else p.default for p in params
               if p.kind in kinds and p.default is not inspect.Parameter.empty and p.name not in CONTEXT_ARGUMENTS}
    target, exclude = getattr(factory, "__molzoo_options_from__", (None, ()))
    if target is not None and any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        for name, default in options_of(target).items():
            if name not in exclude:
                options.setdefault(name, default)
    return options


def close_matches(word: str, candidates: list[str], n: int = 3) -> list[str]:
    """Candidates that look like ``word`` (typos, prefixes)."""
    found = difflib.get_close_matches(word, candidates, n=n, cutoff=0.5)
    found += [c for c in candidates if word and c.startswith(word) and c not in found]
    return found[:n]


def did_you_mean(word: str, candidates: list[str]) -> str:
    matches = close_matches(word, candidates)
    return f" Did you mean: {', '.join(matches)}?" if matches else ""


@dataclass(frozen=True)
class Component:
    """One registration: a named factory of a kind, from a plugin.

    ``stated_config`` is the ``config`` the registration passed; without one, a component's options
    and defaults are its factory's signature (:func:`options_of`), read when first needed (that
    imports a lazy factory's module: ``zoo list`` does not, resolving a spec does).
    """

    kind: str
    name: str
    factory: Callable[..., Any] | str
    description: str = ""
    stated_config: Mapping[str, Any] | None = None
    plugin: str = "?"
    plugin_version: str | None = None

    @functools.cached_property
    def config(self) -> Mapping[str, Any]:
        """Every option the factory accepts, with its default (specs are checked against it)."""
        if self.stated_config is not None:
            return dict(self.stated_config)
        if self.kind not in (*COMPONENT_KINDS, "task"):
            return {}
        try:
            if self.kind == "task":  # a task's options: its loader's keyword parameters with defaults
                load = getattr(self.load(), "load", None)
                return {k: v for k, v in (options_of(load) if callable(load) else {}).items() if k not in TASK_LOADER_ARGUMENTS}
            return options_of(self.load())
        except (TypeError, ValueError) as exc:  # no signature to read (a builtin, a C extension)
            raise ComponentError(f"{self.kind} {self.name!r} from plugin {self.plugin!r}: cannot read the options of "
                                 f"factory {self.factory!r} ({exc}); register it with config={{...}}") from None

    def load(self) -> Callable[..., Any]:
        """Resolve a lazy ``"module:attr"`` factory (this is where heavy imports happen)."""
        if callable(self.factory):
            return self.factory
        module_name, _, attr = self.factory.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            raise ComponentError(
                f"{self.kind} {self.name!r} from plugin {self.plugin!r}: cannot load factory "
                f"{self.factory!r}: {exc}"
            ) from exc
        return obj

    def check_options(self, options: Mapping[str, Any]) -> None:
        unknown = [key for key in options if key not in self.config]
        if unknown:
            allowed = sorted(self.config)
            hints = "".join(did_you_mean(key, allowed) for key in unknown)
            raise UnknownOptionError(
                f"{self.kind} {self.name!r} has no option {', '.join(map(repr, unknown))}. "
                f"Options: {', '.join(allowed) or '(none)'}.{hints}"
            )

    def resolve_options(self, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults overlaid with ``options`` (validated)."""
        options = dict(options or {})
        self.check_options(options)
        return {**self.config, **options}

    def create(self, **options: Any) -> Any:
        """Instantiate the component with validated options (extra keyword args pass through)."""
        return self.load()(**options)


class Catalog:
    """All registered components, filled by :func:`zoo.registry.plugins.load_plugins`."""

    def __init__(self) -> None:
        self.by_kind: dict[str, dict[str, Component]] = {kind: {} for kind in KINDS}

    def add(self, component: Component) -> None:
        if component.kind not in KINDS:
            raise ComponentError(f"unknown component kind {component.kind!r}; kinds: {', '.join(KINDS)}")
        if not component.name or not isinstance(component.name, str):
            raise ComponentError(f"plugin {component.plugin!r} registered a {component.kind} without a name")
        existing = self.by_kind[component.kind].get(component.name)
        if existing is not None:
            raise DuplicateComponentError(
                f"{component.kind} {component.name!r} is registered twice: by plugin "
                f"{existing.plugin!r} and by plugin {component.plugin!r}. Disable one with "
                f"ZOO_DISABLE_PLUGINS={component.plugin}"
            )
        self.by_kind[component.kind][component.name] = component

    def get(self, kind: str, name: str) -> Component:
        if kind not in KINDS:
            raise ComponentError(f"unknown component kind {kind!r}; kinds: {', '.join(KINDS)}")
        try:
            return self.by_kind[kind][name]
        except KeyError:
            names = sorted(self.by_kind[kind])
            raise UnknownComponentError(
                f"unknown {kind} {name!r}.{did_you_mean(str(name), names)} "
                f"Available: {', '.join(names) or '(none)'}. See `zoo list {kind}`."
            ) from None

    def list(self, kind: str | None = None, pattern: str | None = None) -> list[Component]:
        import fnmatch

        kinds = [kind] if kind else list(KINDS)
        out = []
        for k in kinds:
            if k not in KINDS:
                raise ComponentError(f"unknown component kind {k!r}.{did_you_mean(k, list(KINDS))} Kinds: {', '.join(KINDS)}")
            for name in sorted(self.by_kind[k]):
                if pattern is None or fnmatch.fnmatch(name, pattern):
                    out.append(self.by_kind[k][name])
        return out
