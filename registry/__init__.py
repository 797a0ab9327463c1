"""The pluggy core of molzoo: hookspecs, the plugin manager and lookup of components by name."""

from zoo.registry.catalog import KINDS, Component
from zoo.registry.hookspecs import hookimpl, hookspec
from zoo.registry.plugins import get_component, get_plugin_manager, list_components, load_plugins, plugin_info, reset_registry

__all__ = [
    "KINDS",
    "Component",
    "get_component",
    "get_plugin_manager",
    "hookimpl",
    "hookspec",
    "list_components",
    "load_plugins",
    "plugin_info",
    "reset_registry",
]
