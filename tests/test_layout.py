"""The package's layout: one folder per layer, each module importing only from its own folder or folders below.

The folders, lowest first, are read from :data:`FOLDERS`; a new module is placed by the folder it is in,
not by editing a list. Imports are read with ``ast`` wherever they are (module top or inside a function), in
every form: ``from .x import y``, ``from ..core.x import y``, ``from . import x``, ``from .. import core``,
``import lpsbook.core.x``, ``from lpsbook.core.x import y``, ``from lpsbook import core``.
"""
import ast
import re
from pathlib import Path

import pytest

import lpsbook

# lowest first: a module may import from its own folder and from any folder to its left
FOLDERS = ["core", "training", "methods", "protocols", "findings", "show", "experiments", ""]
PACKAGE = Path(lpsbook.__file__).parent
MODULES = sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py"))


def folder_of(module: str) -> str:
    """``"core/data.py"`` -> ``"core"``; ``"cli.py"`` -> ``""`` (the top)."""
    parts = module.split("/")
    return parts[0] if len(parts) > 1 else ""


def imported_folders(module: str, source: str) -> set:
    """The folders of lpsbook that ``source`` (the text of ``module``, a path inside the package) imports from."""
    here = folder_of(module).split("/") if folder_of(module) else []
    found = set()

    def add(parts):  # a dotted path inside the package, split: a folder, cli (the top) or the package's own
        if parts[0] in FOLDERS:  # __init__ (code_version, __version__), which every module may import
            found.add(parts[0])
        elif parts[0] == "cli":
            found.add("")

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - (node.level - 1)] if node.level - 1 <= len(here) else []
                if node.level - 1 > len(here):
                    continue  # above the package
            elif (node.module or "").split(".")[0] == "lpsbook":
                base = []
            else:
                continue
            rest = (node.module or "").split(".") if node.module else []
            if node.level == 0:
                rest = rest[1:]
            path = base + rest
            if path:
                add(path)
            else:  # from . import x / from lpsbook import core, code_version
                for a in node.names:
                    add([a.name])
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("lpsbook."):
                    add(a.name.split(".")[1:])
    return found


def upward(module: str, source: str) -> list:
    """The folders ``module`` imports from that sit above its own."""
    mine = FOLDERS.index(folder_of(module))
    return sorted(f for f in imported_folders(module, source) if FOLDERS.index(f) > mine)


def test_every_module_is_in_a_known_folder():
    assert {folder_of(m) for m in MODULES} <= set(FOLDERS)
    top = {m for m in MODULES if folder_of(m) == ""}
    assert top == {"__init__.py", "cli.py"}, f"place {sorted(top - {'__init__.py', 'cli.py'})} in a folder"
    for folder in FOLDERS[:-1]:
        init = PACKAGE / folder / "__init__.py"
        assert init.is_file() and ast.get_docstring(ast.parse(init.read_text())), f"{folder}/ needs a docstring"


@pytest.mark.parametrize("module", MODULES)
def test_no_module_imports_from_above_its_folder(module):
    bad = upward(module, (PACKAGE / module).read_text())
    assert not bad, f"{module} imports from {bad}, above its folder: move the code down or the module up"


def test_the_check_sees_every_import_form():
    forms = ["from ..show.viz import show", "from ..show import viz", "from .. import show",
             "import lpsbook.show.viz", "from lpsbook.show.viz import show", "from lpsbook.show import viz as v",
             "from lpsbook import show", "def f():\n    from ..show.viz import show"]
    for form in forms:
        assert upward("methods/lps.py", form) == ["show"], form
    assert upward("methods/lps.py", "from .registry import x\nfrom ..core.nets import y\nimport numpy\n"
                  "from .. import code_version") == []


def test_an_upward_import_added_on_purpose_fails(tmp_path):
    """The check run on a real module with one upward import appended: it names the folder."""
    source = (PACKAGE / "core" / "data.py").read_text()
    assert upward("core/data.py", source) == []
    assert upward("core/data.py", source + "\nfrom ..protocols.results import label\n") == ["protocols"]
    assert upward("training/modelset.py", (PACKAGE / "training" / "modelset.py").read_text()
                  + "\ndef later():\n    from lpsbook.show import book\n") == ["show"]


def test_no_private_name_crosses_modules():
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        assert not re.findall(r"from \.[\w.]* ?import .*\b_[a-z]", text), path.name
        # another object's _private method (IPython's _repr_*_ protocol names end in "_" and are allowed)
        assert not re.findall(r"\b(?!self\b)[a-z]\w*\._[a-z]\w*[a-z0-9]\(", text), path.name


def test_modules_stay_small():
    sizes = {m: len((PACKAGE / m).read_text().splitlines()) for m in MODULES}
    assert max(sizes.values()) <= 600, sorted(sizes.items(), key=lambda kv: -kv[1])[:3]


def test_licence_is_shipped_and_declared():
    from importlib.metadata import metadata

    assert (PACKAGE.parent / "LICENSE").read_text().startswith("MIT License")
    assert metadata("lpsbook")["License-Expression"] == "MIT"
