"""The import layers written in pyproject.toml cover the code: `lint-imports` (run by
`make lint`) checks the modules a layer names, so a module of accounts or
controlplane that no layer names would escape it."""

import pkgutil
import tomllib
from pathlib import Path

import accounts
import controlplane

ROOT = Path(__file__).resolve().parents[2]


def layered_modules() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c["layers"] for c in config["contracts"] if c["type"] == "layers"]
    return [m.strip() for layer in layers for m in layer.replace("|", ":").split(":")]


def test_every_module_of_the_split_apps_is_in_one_layer():
    """accounts and controlplane stand on two layers each: every one of their modules
    (and sub-packages) is named once, so none escapes the contract."""
    named = layered_modules()
    assert len(named) == len(set(named)), "a module is named in two layers"
    for package in (accounts, controlplane):
        children = {f"{package.__name__}.{m.name}" for m in pkgutil.iter_modules(package.__path__)}
        assert children == {m for m in named if m.startswith(package.__name__ + ".")}


def test_the_other_apps_are_layers_whole():
    """The other apps are one layer each (or independent siblings in one)."""
    named = set(layered_modules())
    for app in ("console", "scim", "usage", "rooms", "media_nodes", "licensing", "audit"):
        assert app in named
