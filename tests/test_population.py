"""Importing your own models: a folder of checkpoints and a CSV, written as a user would, becomes a model
set that loads, verifies and is classified; every kind of bad input gets one message and exit 2."""
import csv
import textwrap

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from lpsbook import cli
from lpsbook.core.errors import LpsbookError
from lpsbook.protocols import paper
from lpsbook.training import modelset
from lpsbook.training.population import Population

ARCH = "user_nets:small_vgg"
TASKS, SEEDS = ("airplanes", "birds", "cars", "ships"), 5

USER_MODULE = textwrap.dedent('''
    from torch import nn

    def small_vgg():
        """A VGG-style net with BatchNorm: not a ResNet-20."""
        return nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 12, 3, padding=1), nn.BatchNorm2d(12), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(12, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(64, 10))
''')


@pytest.fixture()
def user(tmp_path, monkeypatch):
    """A user's lab folder: their architecture as a module, one checkpoint per model, a labels CSV.

    Task ``t``'s models are random networks to whose 3x3 filters a task's own spatial pattern is added, and
    whose hidden units are in a random order: what tells the tasks apart survives every permutation.
    """
    (tmp_path / "user_nets.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib
    import user_nets
    importlib.reload(user_nets)
    src, rows = tmp_path / "checkpoints", []
    src.mkdir()
    for t, task in enumerate(TASKS):
        pattern = torch.randn(3, 3, generator=torch.Generator().manual_seed(t))
        for s in range(SEEDS):
            torch.manual_seed(100 * t + s)
            net = user_nets.small_vgg()
            with torch.no_grad():
                for m in net.modules():
                    if isinstance(m, torch.nn.Conv2d):
                        m.weight.add_(m.weight.std() * pattern)
            name = f"{task}/run{s}.{'safetensors' if s % 2 else 'pt'}"
            (src / task).mkdir(exist_ok=True)
            state = net.state_dict()
            if s % 2:
                save_file({k: v.contiguous() for k, v in state.items()}, src / name)
            else:
                torch.save(state, src / name)
            rows.append({"file": name, "task": task, "accuracy": 0.8 + 0.01 * s})
    labels = tmp_path / "labels.csv"
    _write_csv(labels, rows)
    return {"src": src, "labels": labels, "rows": rows, "root": tmp_path, "module": user_nets}


def _write_csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _import(user, out, *extra, labels=None):
    return cli.main(["modelset", "import", str(user["src"]), "--arch", ARCH, "--labels",
                     str(labels or user["labels"]), "--out", str(out), *extra])


def test_an_imported_population_loads_verifies_and_is_classified(user, capsys):
    out = user["root"] / "imported"
    assert _import(user, out) == 0, capsys.readouterr().err
    assert f"{len(TASKS) * SEEDS} models imported" in capsys.readouterr().out
    ms = modelset.load(out)
    assert isinstance(ms, Population) and len(ms) == len(TASKS) * SEEDS
    assert ms.layers == ["0.weight", "4.weight", "8.weight"]
    assert len(ms.spec.names) == 3 and ("13.weight", 1) in ms.spec.perm_to_axes["8"]  # 16 channels x 4 pixels
    assert ms.task_names(2) == "cars" and ms.meta["seed"].tolist() == list(range(SEEDS)) * len(TASKS)
    assert np.allclose(ms.meta["test_acc"], [0.8 + 0.01 * s for s in range(SEEDS)] * len(TASKS))
    assert torch.equal(ms.model(7).state_dict()["4.weight"], ms.state["4.weight"][7])
    table = modelset.info(out)
    assert table["models"].tolist() == [SEEDS] * len(TASKS)
    methods = ["lps", "frobenius", "rebasin_fc", "fc_permaug", "filter_norms", "weight_stats"]
    result = paper.classification(ms, methods=methods, folds=5)
    for method in methods:
        top1 = result["results"][method]["top1"]["mean"]
        if method in ("lps", "frobenius", "rebasin_fc", "fc_permaug"):  # they read the filters' shape
            assert top1 > 0.6, (method, top1)  # chance is 1 / 4: the pattern is found whatever the unit order
        rows = sorted(r for fold in result["predictions"][method] for r in fold["rows"])
        assert rows == list(range(len(ms)))  # every model tested once


def test_a_population_that_needs_images_says_so(user, capsys):
    out = user["root"] / "imported"
    assert _import(user, out) == 0
    ms = modelset.load(out)
    for method in ("probing", "rsa"):
        with pytest.raises(LpsbookError, match="cannot read a population imported from checkpoints"):
            paper.classification(ms, methods=[method], seeds=1)
    with pytest.raises(LpsbookError, match="graph learner reads one node per unit.*flattened"):
        paper.classification(ms, methods=["graph"], seeds=1)


def _fails(capsys, code, *needles):
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("lpsbook: error:") == 1, err
    for needle in needles:
        assert needle in err, (needle, err)


def test_files_missing_or_not_listed(user, capsys):
    out = user["root"] / "out"
    _write_csv(user["root"] / "short.csv", user["rows"][1:])
    _fails(capsys, _import(user, out, labels=user["root"] / "short.csv"), "checkpoints in the folder not listed",
           user["rows"][0]["file"])
    _write_csv(user["root"] / "long.csv", user["rows"] + [{"file": "ghost.pt", "task": "ships", "accuracy": 1}])
    _fails(capsys, _import(user, out, labels=user["root"] / "long.csv"), "files listed but not in the folder",
           "ghost.pt")
    assert not out.exists() and not list(user["root"].glob(".out.*"))


def test_a_checkpoint_that_does_not_fit_the_architecture(user, capsys):
    bad = user["rows"][3]["file"]
    torch.save(user["module"].small_vgg().state_dict() | {"4.weight": torch.zeros(12, 8, 5, 5)},
               user["src"] / bad.replace(".safetensors", ".pt"))
    (user["src"] / bad).unlink()
    rows = [dict(r, file=r["file"].replace(".safetensors", ".pt")) if r["file"] == bad else r for r in user["rows"]]
    _write_csv(user["labels"], rows)
    _fails(capsys, _import(user, user["root"] / "out"), "does not fit user_nets:small_vgg", "size mismatch")
    assert not (user["root"] / "out").exists()


def test_a_pickle_that_is_not_plain_tensors(user, capsys):
    target = user["src"] / user["rows"][0]["file"]
    torch.save({"state": user["module"].small_vgg()}, target)  # a whole module: code, not tensors
    _fails(capsys, _import(user, user["root"] / "out"), str(target), "not a plain state dict")
    torch.save({"epoch": 3, "model": {}}, target)
    _fails(capsys, _import(user, user["root"] / "out"), str(target), "not a state dict")


@pytest.mark.parametrize("content,needle", [
    ("name,label\na.pt,x\n", "columns are file, task"),
    ("file,task\n", "every row needs a file and a task"),
    ("file,task,seed\nairplanes/run0.pt,airplanes,0\nairplanes/run1.safetensors,airplanes,0\n", "seed 0 twice"),
    ("file,task\nairplanes/run0.pt,x\nairplanes/run0.pt,y\n", "more than once"),
])
def test_a_label_file_that_does_not_match(user, capsys, content, needle):
    (user["root"] / "bad.csv").write_text(content)
    _fails(capsys, _import(user, user["root"] / "out", labels=user["root"] / "bad.csv"), needle)


def test_bad_architecture_and_occupied_output(user, capsys):
    out = user["root"] / "out"
    for arch, needle in (("user_nets", "MODULE:CALLABLE"), ("no_such_module:f", "cannot be imported"),
                         ("user_nets:nothing", "has no 'nothing'")):
        code = cli.main(["modelset", "import", str(user["src"]), "--arch", arch, "--labels", str(user["labels"]),
                         "--out", str(out)])
        _fails(capsys, code, needle)
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    _fails(capsys, _import(user, out), "is not an empty folder")
    assert (out / "keep.txt").read_text() == "mine"
