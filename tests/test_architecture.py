"""docs/architecture.md is the map of engine/: it must name every module and package there is."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ENGINE = REPO / "engine"
ROW = re.compile(r"^\| `engine/([^`]+)` \|([^|]*)\|", re.M)


def mapped() -> dict[str, set[str]]:
    """Each row of the map: a top-level module or a package, and the modules it lists."""
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    return {
        place: {name.strip() for name in modules.split(",") if name.strip()}
        for place, modules in ROW.findall(text)
    }


def on_disk() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted(ENGINE.iterdir()):
        if path.suffix == ".py" and path.name != "__init__.py":
            found[path.name] = set()
        elif path.is_dir() and (path / "__init__.py").exists():
            found[f"{path.name}/"] = {
                f"{child.name}/" if child.is_dir() else child.stem
                for child in path.iterdir()
                if (child.suffix == ".py" and child.name != "__init__.py")
                or (child.is_dir() and child.name != "__pycache__")
            }
    return found


def test_the_map_names_every_module_and_package_of_the_engine() -> None:
    assert mapped() == on_disk()


def test_the_map_lists_the_layers_the_import_contract_enforces() -> None:
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    layers = re.search(r'type = "layers"\nlayers = \[\n(.*?)\n\]', pyproject, re.S)
    assert layers is not None
    contract = [line.strip().strip('",') for line in layers.group(1).splitlines()]
    assert "\n".join(contract) in text
