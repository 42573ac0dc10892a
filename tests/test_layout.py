"""The package's layout: every module imports only modules below it in the chain."""
import re
from pathlib import Path

import lpsbook

# lowest first: a module may import any module to its left, never one to its right
CHAIN = ("errors progress presets nets _torchvision data store estimator metrics training modelset symmetry "
         "lps baselines graph probing similarity methods experiments viz explorer book ladder cli").split()
PACKAGE = Path(lpsbook.__file__).parent


def _imports(path: Path) -> set:
    text = path.read_text()
    names = set(re.findall(r"from \.(\w+) import", text))
    for group in re.findall(r"from \. import ([\w, ]+)", text):
        names |= {n.strip() for n in group.split(",")}
    return names & set(CHAIN)


def test_every_module_is_in_the_chain():
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert modules == set(CHAIN), f"place {sorted(modules - set(CHAIN))} in CHAIN"


def test_no_module_imports_from_above_it():
    upward = {m: sorted(d for d in _imports(PACKAGE / f"{m}.py") if CHAIN.index(d) > CHAIN.index(m))
              for m in CHAIN}
    assert not {m: d for m, d in upward.items() if d}, upward


def test_no_private_name_crosses_modules():
    for path in PACKAGE.glob("*.py"):
        text = path.read_text()
        assert not re.findall(r"from \.\w* ?import .*\b_[a-z]", text), path.name
        # another object's _private method (IPython's _repr_*_ protocol names end in "_" and are allowed)
        assert not re.findall(r"\b(?!self\b)[a-z]\w*\._[a-z]\w*[a-z0-9]\(", text), path.name


def test_licence_is_shipped_and_declared():
    from importlib.metadata import metadata

    assert (PACKAGE.parent / "LICENSE").read_text().startswith("MIT License")
    assert metadata("lpsbook")["License-Expression"] == "MIT"
