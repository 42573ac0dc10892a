"""The package's layout: four named layers, each module importing only from below it.

Imports are read with ``ast`` wherever they are (module top or inside a
function), in every form: ``from .x import y``, ``from . import x as z``,
``import lpsbook.x``, ``from lpsbook.x import y``, ``from lpsbook import x``.
"""
import ast
import re
from pathlib import Path

import pytest

import lpsbook

# lowest layer first; inside a layer, lowest module first. A module may import any module of a lower layer
# and any module to its left in its own layer, never one to its right or in a layer above.
LAYERS = {
    "core": "errors progress presets memo runtime nets _torchvision data store estimator metrics training modelset "
            "symmetry",
    "methods": "lps baselines graph probing similarity methods",
    "protocols": "results transfer protocols claims alignment analyses",
    "presentation": "tables viz filterplots demos explorer book ladder cli",
}
ORDER = [m for layer in LAYERS.values() for m in layer.split()]
LAYER_OF = {m: name for name, layer in LAYERS.items() for m in layer.split()}
PACKAGE = Path(lpsbook.__file__).parent
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def imported(source: str) -> set:
    """The lpsbook modules that ``source`` (a module of the package) imports, in any form, anywhere."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            inside = node.level == 1 or (node.level == 0 and (node.module or "").split(".")[0] == "lpsbook")
            if not inside:
                continue
            parts = (node.module or "").split(".")
            module = parts[0] if node.level == 1 else (parts[1] if len(parts) > 1 else "")
            if module:
                names.add(module)
            else:  # from . import x, y as z / from lpsbook import x
                names |= {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name.split(".")[1] for a in node.names if a.name.startswith("lpsbook.")}
    return names & set(ORDER)


def upward(module: str, source: str) -> list:
    """The imports of ``module`` that go up the layers (or right within its layer)."""
    return sorted(d for d in imported(source) if ORDER.index(d) >= ORDER.index(module) and d != module)


def test_every_module_has_a_layer():
    assert set(MODULES) == set(ORDER), f"place {sorted(set(MODULES) - set(ORDER))} in LAYERS"


@pytest.mark.parametrize("module", MODULES)
def test_no_module_imports_from_above_it(module):
    bad = upward(module, (PACKAGE / f"{module}.py").read_text())
    assert not bad, (f"{module} ({LAYER_OF[module]}) imports {bad} "
                     f"({', '.join(LAYER_OF[b] for b in bad)}): move the code down or the import up")


def test_the_check_sees_every_import_form():
    forms = ["from .viz import show", "from . import viz", "from . import store, viz as v",
             "import lpsbook.viz", "from lpsbook.viz import show", "from lpsbook import viz as v",
             "def f():\n    from .viz import show"]
    for form in forms:
        assert upward("lps", form) == ["viz"], form
    assert upward("viz", "from .lps import LPS\nimport numpy\nfrom .. import x") == []


def test_no_private_name_crosses_modules():
    for path in PACKAGE.glob("*.py"):
        text = path.read_text()
        assert not re.findall(r"from \.\w* ?import .*\b_[a-z]", text), path.name
        # another object's _private method (IPython's _repr_*_ protocol names end in "_" and are allowed)
        assert not re.findall(r"\b(?!self\b)[a-z]\w*\._[a-z]\w*[a-z0-9]\(", text), path.name


def test_modules_stay_small():
    sizes = {p.stem: len(p.read_text().splitlines()) for p in PACKAGE.glob("*.py")}
    assert max(sizes.values()) <= 600, sorted(sizes.items(), key=lambda kv: -kv[1])[:3]


def test_licence_is_shipped_and_declared():
    from importlib.metadata import metadata

    assert (PACKAGE.parent / "LICENSE").read_text().startswith("MIT License")
    assert metadata("lpsbook")["License-Expression"] == "MIT"
