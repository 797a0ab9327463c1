"""Built-in compositions: TOML specs shipped with the package."""

from pathlib import Path

from zoo.registry import hookimpl

SPEC_DIR = Path(__file__).with_name("compositions")


def _spec_file(name: str):
    def factory() -> Path:
        return SPEC_DIR / f"{name}.toml"

    factory.__name__ = f"{name}_spec"
    return factory


@hookimpl
def register_compositions(register):
    register(
        "aman",
        _spec_file("aman"),
        description="AMAN reference: scibert + graph_transformer + adversarial + triplet",
    )
