"""The registry, exercised through pluggy for real.

Every test builds its own throw-away plugins: fake built-in modules (``DEFAULT_PLUGINS`` is
monkeypatched to name them) and fake entry points (``importlib.metadata.entry_points`` is
monkeypatched to return them), so nothing here depends on which real built-ins exist.
"""

from __future__ import annotations

import os
import subprocess
import sys
import types
import uuid
import warnings
from importlib import metadata

import pytest

import zoo
from zoo.errors import ComponentError, DuplicateComponentError, PluginLoadWarning, UnknownComponentError, UnknownOptionError
from zoo.registry import (
    get_component,
    get_plugin_manager,
    hookimpl,
    list_components,
    load_plugins,
    plugin_info,
)
from zoo.registry import plugins as plugins_mod
from zoo.registry.plugins import ENTRY_POINT_GROUP

pytestmark = pytest.mark.usefixtures("fresh_registry")


# --------------------------------------------------------------------------- helpers


def make_plugin(module_name: str, **hooks) -> types.ModuleType:
    """A module object whose attributes are ``@hookimpl`` functions (``hook_name=fn``)."""
    module = types.ModuleType(module_name)
    for hook_name, function in hooks.items():
        setattr(module, hook_name, hookimpl(function))
    return module


def registers(*registrations):
    """A hook implementation that calls ``register(*args, **kwargs)`` for each registration.

    Each registration is ``(args_tuple, kwargs_dict)`` or just an args tuple.
    """

    def hook(register):
        for item in registrations:
            args, kwargs = item if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], dict) else (item, {})
            register(*args, **kwargs)

    return hook


class FakeDist:
    def __init__(self, name: str, version: str):
        self.name = name
        self.version = version


class FakeEntryPoint:
    """Duck-types ``importlib.metadata.EntryPoint`` (name, value, group, dist, load)."""

    def __init__(self, name: str, value: str, dist: FakeDist | None = None, error: BaseException | None = None):
        self._ep = metadata.EntryPoint(name, value, ENTRY_POINT_GROUP)
        self.name, self.value, self.group = name, value, ENTRY_POINT_GROUP
        self.dist = dist
        self._error = error

    def load(self):
        if self._error is not None:
            raise self._error
        return self._ep.load()


@pytest.fixture
def install(monkeypatch):
    """``install(builtins=[module, ...], entry_points=[(name, module_or_value, version), ...])``.

    Built-in modules go into ``sys.modules`` and ``DEFAULT_PLUGINS``; entry points are served
    by a fake ``importlib.metadata.entry_points``. Entry point modules go into ``sys.modules``
    under a unique name; a string value is used as is (e.g. a module that does not exist).
    """

    def _install(builtins=(), entry_points=()):
        names = []
        for module in builtins:
            monkeypatch.setitem(sys.modules, module.__name__, module)
            names.append(module.__name__)
        monkeypatch.setattr(plugins_mod, "DEFAULT_PLUGINS", tuple(names))

        eps = []
        for item in entry_points:
            if isinstance(item, FakeEntryPoint):
                eps.append(item)
                continue
            name, target, version = item
            if isinstance(target, types.ModuleType):
                monkeypatch.setitem(sys.modules, target.__name__, target)
                value = target.__name__
            else:
                value = target
            eps.append(FakeEntryPoint(name, value, FakeDist(f"molzoo-{name}", version) if version else None))

        def fake_entry_points(**selection):
            group = selection.get("group")
            return [ep for ep in eps if group is None or ep.group == group]

        monkeypatch.setattr(metadata, "entry_points", fake_entry_points)

    return _install


def unique(prefix: str) -> str:
    return f"_zoo_test_{prefix}_{uuid.uuid4().hex[:8]}"


def factory(**kwargs):
    return kwargs


# --------------------------------------------------------------------------- lookup


def test_lookup_by_name(install):
    builtin = make_plugin(
        unique("builtin"),
        register_text_encoders=registers(
            (("bag_of_words", factory), {"description": "Counts words.", "config": {"vocab": 1000, "pool": "mean"}}),
        ),
    )
    install(builtins=[builtin])

    component = get_component("text_encoder", "bag_of_words")
    assert component.kind == "text_encoder"
    assert component.name == "bag_of_words"
    assert component.description == "Counts words."
    assert dict(component.config) == {"vocab": 1000, "pool": "mean"}
    assert component.plugin == builtin.__name__
    assert component.plugin_version == zoo.__version__
    assert component.load() is factory
    # defaults overlaid with options; extra keyword args (embed_dim) pass through create()
    options = component.resolve_options({"vocab": 50})
    assert options == {"vocab": 50, "pool": "mean"}
    assert component.create(**options, embed_dim=8) == {"vocab": 50, "pool": "mean", "embed_dim": 8}
    # same catalog object on the second call (hooks run once)
    assert load_plugins() is load_plugins()


def test_same_name_in_different_kinds_is_fine(install):
    install(
        builtins=[
            make_plugin(
                unique("kinds"),
                register_losses=registers(("shared", factory)),
                register_aligners=registers(("shared", factory)),
            )
        ]
    )
    assert get_component("loss", "shared").kind == "loss"
    assert get_component("aligner", "shared").kind == "aligner"


def test_lazy_factory_is_imported_only_on_load(install, tmp_path, monkeypatch):
    module_name = unique("lazy_target")
    (tmp_path / f"{module_name}.py").write_text(
        "class Outer:\n"
        "    class Inner:\n"
        "        def __init__(self, **kwargs):\n"
        "            self.kwargs = kwargs\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    install(
        builtins=[
            make_plugin(
                unique("lazy_plugin"),
                register_molecule_encoders=registers(
                    ((("lazy_gnn", f"{module_name}:Outer.Inner")), {"config": {"layers": 3}}),
                    ("broken", f"{module_name}:Missing"),
                    ("no_module", f"{unique('absent')}:Thing"),
                ),
            )
        ]
    )
    try:
        component = get_component("molecule_encoder", "lazy_gnn")
        list_components("molecule_encoder")
        assert module_name not in sys.modules, "a lazy factory was imported before .load()"

        cls = component.load()
        assert module_name in sys.modules
        assert cls.__qualname__ == "Outer.Inner"
        instance = component.create(**component.resolve_options(), embed_dim=16)
        assert instance.kwargs == {"layers": 3, "embed_dim": 16}

        for name in ("broken", "no_module"):
            with pytest.raises(ComponentError, match="cannot load factory") as info:
                get_component("molecule_encoder", name).load()
            assert "lazy_plugin" in str(info.value)
    finally:
        sys.modules.pop(module_name, None)


# --------------------------------------------------------------------------- errors


def test_duplicate_name_names_both_plugins(install):
    first = make_plugin(unique("first"), register_aligners=registers(("cross_attention", factory)))
    second = make_plugin(unique("second"), register_aligners=registers(("cross_attention", factory)))
    install(builtins=[first], entry_points=[("other_pkg", second, "2.0")])

    with pytest.raises(DuplicateComponentError) as info:
        load_plugins()
    message = str(info.value)
    assert first.__name__ in message
    assert "other_pkg" in message
    assert "cross_attention" in message
    assert "ZOO_DISABLE_PLUGINS" in message
    assert isinstance(info.value, ComponentError)


def test_duplicate_can_be_resolved_by_disabling_one(install, monkeypatch):
    first = make_plugin(unique("first"), register_aligners=registers(("cross_attention", factory)))
    second = make_plugin(unique("second"), register_aligners=registers(("cross_attention", factory)))
    install(builtins=[first], entry_points=[("other_pkg", second, "2.0")])
    monkeypatch.setenv("ZOO_DISABLE_PLUGINS", "other_pkg")
    assert get_component("aligner", "cross_attention").plugin == first.__name__


def test_unknown_name_lists_close_matches(install):
    install(
        builtins=[
            make_plugin(
                unique("mols"),
                register_molecule_encoders=registers(
                    ("graph_transformer", factory), ("gin", factory), ("morgan_mlp", factory)
                ),
            )
        ]
    )
    with pytest.raises(UnknownComponentError) as info:
        get_component("molecule_encoder", "graph_transformr")
    message = str(info.value)
    assert "graph_transformr" in message
    assert "Did you mean: graph_transformer" in message
    assert "Available: gin, graph_transformer, morgan_mlp" in message
    assert isinstance(info.value, KeyError)  # usable as a mapping miss too
    assert isinstance(info.value, ComponentError)

    with pytest.raises(UnknownComponentError) as info:
        get_component("molecule_encoder", "zzzzzz")
    assert "Did you mean" not in str(info.value)

    with pytest.raises(ComponentError, match="unknown component kind 'molecule_encoders'"):
        get_component("molecule_encoders", "gin")


def test_unknown_option_lists_options_and_close_matches(install):
    install(
        builtins=[
            make_plugin(
                unique("opts"),
                register_molecule_encoders=registers(
                    (("gin", factory), {"config": {"hidden_dim": 256, "layers": 3, "dropout": 0.1}}),
                    ("bare", factory),
                ),
            )
        ]
    )
    component = get_component("molecule_encoder", "gin")
    with pytest.raises(UnknownOptionError) as info:
        component.resolve_options({"hiden_dim": 128, "layers": 2})
    message = str(info.value)
    assert "'hiden_dim'" in message
    assert "Options: dropout, hidden_dim, layers." in message
    assert "Did you mean: hidden_dim?" in message
    assert isinstance(info.value, ComponentError)

    with pytest.raises(UnknownOptionError, match=r"Options: \(none\)"):
        get_component("molecule_encoder", "bare").check_options({"anything": 1})


def test_register_without_name_is_an_error(install):
    install(builtins=[make_plugin(unique("noname"), register_losses=registers(("", factory)))])
    with pytest.raises(ComponentError, match="without a name"):
        load_plugins()


# --------------------------------------------------------------------------- failing plugins


def test_failing_entry_point_warns_and_others_still_load(install):
    good = make_plugin(unique("good"), register_losses=registers(("infonce", factory)))
    install(
        builtins=[make_plugin(unique("builtin"), register_losses=registers(("triplet", factory)))],
        entry_points=[
            ("good_pkg", good, "1.0"),
            ("missing_pkg", unique("no_such_module"), "0.3"),
            FakeEntryPoint("raising_pkg", "whatever", FakeDist("molzoo-raising", "0.1"), ImportError("needs libfoo")),
        ],
    )
    with pytest.warns(PluginLoadWarning) as record:
        catalog = load_plugins()
    messages = "\n".join(str(w.message) for w in record)
    assert "missing_pkg" in messages and "ModuleNotFoundError" in messages
    assert "raising_pkg" in messages and "needs libfoo" in messages
    assert "ZOO_STRICT_PLUGINS" in messages

    assert [c.name for c in catalog.list("loss")] == ["infonce", "triplet"]
    assert get_component("loss", "infonce").plugin == "good_pkg"

    info = {p["name"]: p for p in plugin_info()}
    assert "needs libfoo" in info["raising_pkg"]["error"]
    assert info["missing_pkg"]["error"]
    assert info["good_pkg"]["error"] is None
    assert info["good_pkg"]["hooks"] == ["register_losses"]


def test_failing_builtin_warns_and_others_still_load(install, monkeypatch):
    good = make_plugin(unique("good"), register_tasks=registers(("chebi20", factory)))
    install(builtins=[good])
    missing = unique("missing_builtin")
    monkeypatch.setattr(plugins_mod, "DEFAULT_PLUGINS", (missing, good.__name__))
    with pytest.warns(PluginLoadWarning, match=missing):
        load_plugins()
    assert get_component("task", "chebi20").plugin == good.__name__


def test_hook_that_raises_warns_and_others_still_load(install):
    def explode(register):
        register("half_done", factory)
        raise RuntimeError("boom")

    install(
        builtins=[make_plugin(unique("ok"), register_losses=registers(("infonce", factory)))],
        entry_points=[("exploding", make_plugin(unique("exploding"), register_losses=explode), "1.0")],
    )
    with pytest.warns(PluginLoadWarning, match="exploding.*register_losses.*RuntimeError: boom"):
        load_plugins()
    assert get_component("loss", "infonce")
    assert "boom" in {p["name"]: p for p in plugin_info()}["exploding"]["error"]


@pytest.mark.parametrize("value", ["1", "true", "yes"])
def test_strict_mode_makes_a_failing_plugin_fatal(install, monkeypatch, value):
    install(
        builtins=[make_plugin(unique("ok"), register_losses=registers(("infonce", factory)))],
        entry_points=[("missing_pkg", unique("no_such_module"), "0.3")],
    )
    monkeypatch.setenv("ZOO_STRICT_PLUGINS", value)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PluginLoadWarning)  # strict raises instead of warning
        with pytest.raises(ComponentError, match="missing_pkg.*ZOO_STRICT_PLUGINS"):
            load_plugins()


def test_strict_mode_makes_a_raising_hook_fatal(install, monkeypatch):
    def explode(register):
        raise RuntimeError("boom")

    install(entry_points=[("exploding", make_plugin(unique("exploding"), register_tasks=explode), "1.0")])
    monkeypatch.setenv("ZOO_STRICT_PLUGINS", "1")
    with pytest.raises(ComponentError, match="boom"):
        load_plugins()


def test_misspelled_hook_is_rejected(install):
    typo = make_plugin(unique("typo"), register_text_encoder=registers(("bert", factory)))  # missing "s"
    install(entry_points=[("typo_pkg", typo, "1.0")])
    with pytest.raises(ComponentError, match="register_text_encoder"):
        load_plugins()


def test_runtime_registered_plugin_object(install):
    """Plugins may also be registered on the manager directly (objects with hookimpl methods)."""

    class Runtime:
        @hookimpl
        def register_compositions(self, register):
            register("tiny", factory, description="A tiny composition.")

        @hookimpl
        def register_losses(self, register):
            raise RuntimeError("runtime boom")

    install()
    pm = get_plugin_manager()
    pm.register(Runtime(), name="runtime_plugin")
    with pytest.warns(PluginLoadWarning, match="runtime_plugin.*runtime boom"):
        catalog = load_plugins()
    component = catalog.get("composition", "tiny")
    assert component.plugin == "runtime_plugin"
    assert component.description == "A tiny composition."
    info = {p["name"]: p for p in plugin_info()}
    assert info["runtime_plugin"]["source"] == "registered at runtime"
    assert info["runtime_plugin"]["hooks"] == ["register_compositions", "register_losses"]
    assert "runtime boom" in info["runtime_plugin"]["error"]


# --------------------------------------------------------------------------- enabling / disabling


def _three_plugins(install):
    builtin = make_plugin(unique("core"), register_losses=registers(("infonce", factory)))
    install(
        builtins=[builtin],
        entry_points=[
            ("alpha", make_plugin(unique("alpha"), register_losses=registers(("alpha_loss", factory))), "1.0"),
            ("beta", make_plugin(unique("beta"), register_losses=registers(("beta_loss", factory))), "1.0"),
        ],
    )
    return builtin


def _loss_names():
    return [c.name for c in list_components("loss")]


def test_disable_env_skips_entry_point_plugins(install, monkeypatch):
    _three_plugins(install)
    monkeypatch.setenv("ZOO_DISABLE_PLUGINS", "alpha, nonexistent")
    with pytest.warns(PluginLoadWarning, match="ZOO_DISABLE_PLUGINS: no plugin named 'nonexistent'"):
        assert _loss_names() == ["beta_loss", "infonce"]
    assert "alpha" not in {p["name"] for p in plugin_info()}


@pytest.mark.parametrize("var, value, message", [
    ("ZOO_DISABLE_PLUGINS", "alpah", "ZOO_DISABLE_PLUGINS: no plugin named 'alpah'. Did you mean: alpha?"),
    ("ZOO_PLUGINS", "beta,btea", "ZOO_PLUGINS: no installed entry-point plugin named 'btea'. Did you mean: beta?"),
])
def test_misspelled_plugin_name_in_env_warns_with_close_matches(install, monkeypatch, var, value, message):
    _three_plugins(install)
    monkeypatch.setenv(var, value)
    with pytest.warns(PluginLoadWarning) as record:
        load_plugins()
    assert [str(w.message).split(" Known:")[0] for w in record] == [message]
    assert "\n" not in str(record[0].message)


def test_misspelled_disabled_plugin_is_one_warning_line_in_the_cli():
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ZOO_")}, "ZOO_DISABLE_PLUGINS": "text_encodrs"}
    done = subprocess.run([sys.executable, "-m", "zoo.cli", "list", "loss"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    assert done.stderr.startswith("zoo: warning: ZOO_DISABLE_PLUGINS: no plugin named 'text_encodrs'. "
                                  "Did you mean: text") and done.stderr.count("\n") == 1


BROKEN_PLUGIN = "from zoo.registry import hookimpl\n\nraise ImportError('needs libfoo')\n"


def _broken_plugin_on_path(tmp_path, monkeypatch, source: str = BROKEN_PLUGIN):
    name = unique("broken")
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name, tmp_path / f"{name}.py"


@pytest.mark.parametrize("source, line", [(BROKEN_PLUGIN, 3), ("x = 1\ndef broken(:\n", 2)])
def test_failed_plugin_import_names_file_and_line(install, tmp_path, monkeypatch, source, line):
    name, path = _broken_plugin_on_path(tmp_path, monkeypatch, source)
    install(entry_points=[FakeEntryPoint("broken_pkg", name, FakeDist("molzoo-broken", "0.1"))])
    with pytest.warns(PluginLoadWarning) as record:
        load_plugins()
    message = str(record[0].message)
    assert f"(at {path}:{line})" in message and "ZOO_DEBUG=1" in message
    assert f"{path}:{line}" in {p["name"]: p for p in plugin_info()}["broken_pkg"]["error"]


def test_zoo_debug_prints_a_failed_plugin_import_traceback(install, tmp_path, monkeypatch, capsys):
    name, path = _broken_plugin_on_path(tmp_path, monkeypatch)
    install(entry_points=[FakeEntryPoint("broken_pkg", name, FakeDist("molzoo-broken", "0.1"))])
    monkeypatch.setenv("ZOO_DEBUG", "1")
    with pytest.warns(PluginLoadWarning, match="broken_pkg"):
        load_plugins()
    err = capsys.readouterr().err
    assert "Traceback" in err and f'File "{path}", line 3' in err and "ImportError: needs libfoo" in err


def test_disable_env_skips_builtins_by_full_or_short_name(install, monkeypatch):
    builtin = _three_plugins(install)
    for value in (builtin.__name__, builtin.__name__.rsplit(".", 1)[-1]):
        monkeypatch.setenv("ZOO_DISABLE_PLUGINS", value)
        plugins_mod.reset_registry()
        assert _loss_names() == ["alpha_loss", "beta_loss"]


@pytest.mark.parametrize("name", ["loss", "zoo.plugins.loss", "losses", "zoo.plugins.losses"])
def test_disable_env_accepts_current_and_former_builtin_names(monkeypatch, name):
    """Built-ins are grouped by kind (zoo.plugins.loss); the former module names (losses) still work."""
    monkeypatch.setenv("ZOO_DISABLE_PLUGINS", name)
    plugins_mod.reset_registry()
    with warnings.catch_warnings():
        warnings.simplefilter("error", PluginLoadWarning)
        assert list_components("loss") == []
        assert list_components("aligner")
    assert "zoo.plugins.loss" not in {p["name"] for p in plugin_info()}


def test_allow_list_loads_only_named_entry_points(install, monkeypatch):
    _three_plugins(install)
    monkeypatch.setenv("ZOO_PLUGINS", "beta")
    assert _loss_names() == ["beta_loss", "infonce"]  # built-ins still load

    monkeypatch.setenv("ZOO_PLUGINS", "")  # empty allow-list: built-ins only
    plugins_mod.reset_registry()
    assert _loss_names() == ["infonce"]

    monkeypatch.delenv("ZOO_PLUGINS")
    plugins_mod.reset_registry()
    assert _loss_names() == ["alpha_loss", "beta_loss", "infonce"]


def test_disable_wins_over_allow_list(install, monkeypatch):
    _three_plugins(install)
    monkeypatch.setenv("ZOO_PLUGINS", "alpha,beta")
    monkeypatch.setenv("ZOO_DISABLE_PLUGINS", "beta")
    assert _loss_names() == ["alpha_loss", "infonce"]


# --------------------------------------------------------------------------- introspection


def test_plugin_info_lists_names_versions_and_hooks(install):
    builtin = make_plugin(
        unique("core"),
        register_losses=registers(("infonce", factory)),
        register_tasks=registers(("chebi20", factory)),
    )
    install(
        builtins=[builtin],
        entry_points=[
            ("ext", make_plugin(unique("ext"), register_molecule_encoders=registers(("x", factory))), "3.1.4"),
            ("nodist", make_plugin(unique("nodist"), register_aligners=registers(("y", factory))), None),
        ],
    )
    info = {p["name"]: p for p in plugin_info()}
    assert set(info) == {builtin.__name__, "ext", "nodist"}

    assert info[builtin.__name__]["source"] == "builtin"
    assert info[builtin.__name__]["version"] == zoo.__version__
    assert info[builtin.__name__]["hooks"] == ["register_losses", "register_tasks"]

    assert info["ext"]["source"] == "entry point molzoo-ext"
    assert info["ext"]["version"] == "3.1.4"
    assert info["ext"]["hooks"] == ["register_molecule_encoders"]
    assert info["nodist"]["version"] is None
    assert all(p["error"] is None for p in info.values())

    # versions are attached to the components too
    assert get_component("molecule_encoder", "x").plugin_version == "3.1.4"


def test_list_components_kind_and_pattern(install):
    install(
        builtins=[
            make_plugin(
                unique("many"),
                register_text_encoders=registers(("scibert", factory), ("minilm", factory)),
                register_molecule_encoders=registers(
                    ("gin", factory), ("graph_transformer", factory), ("graph_sage", factory)
                ),
            )
        ]
    )
    assert [c.name for c in list_components("molecule_encoder")] == ["gin", "graph_sage", "graph_transformer"]
    assert [c.name for c in list_components("molecule_encoder", "graph_*")] == ["graph_sage", "graph_transformer"]
    assert [c.name for c in list_components("molecule_encoder", "*sage")] == ["graph_sage"]
    assert list_components("molecule_encoder", "nothing*") == []
    everything = list_components()
    assert [(c.kind, c.name) for c in everything] == [
        ("text_encoder", "minilm"),
        ("text_encoder", "scibert"),
        ("molecule_encoder", "gin"),
        ("molecule_encoder", "graph_sage"),
        ("molecule_encoder", "graph_transformer"),
    ]
    assert [c.name for c in list_components(pattern="g*")] == ["gin", "graph_sage", "graph_transformer"]
    with pytest.raises(ComponentError, match="Did you mean: text_encoder"):
        list_components("text_encodr")


# --------------------------------------------------------------------------- import cost


def test_loading_the_catalog_does_not_import_torch():
    """``zoo --help`` / ``zoo list`` must stay fast: no torch, transformers or PyG at load time.

    Runs against the real built-ins and installed entry-point plugins, in a fresh interpreter.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZOO_")}
    code = (
        "import sys, warnings\n"
        "warnings.simplefilter('ignore')\n"
        "import zoo.registry as r\n"
        "r.load_plugins()\n"
        "r.list_components()\n"
        "r.plugin_info()\n"
        "heavy = [m for m in ('torch', 'torch_geometric', 'transformers') if m in sys.modules]\n"
        "assert not heavy, f'imported at catalog load: {heavy}'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
