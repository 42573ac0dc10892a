"""The aligned-filter explorer and the book's figures behave as the chapters say.

* the alignment view agrees with the LPS branch (Eqs. 5-8) and does not
  depend on the order of the trained filters and channels;
* the ipywidgets explorer follows its controls (task, seed, layer, reference);
* the figures have the traces, menus and sliders the chapters rely on;
* the symmetry helpers the chapters use are exact symmetries (or, restricted,
  are not).
"""
import numpy as np
import pytest
import torch

from lpsbook.findings import alignment, demos
from lpsbook.show import explorer, filterplots, tables, viz
from lpsbook.protocols import results
from lpsbook.core import symmetry
from lpsbook.core.nets import ResNet20, conv_layers


@pytest.fixture(scope="module")
def brief(tiny_modelset):
    return alignment.train_briefly(tiny_modelset, epochs=1, cache=False)


@pytest.fixture(scope="module")
def explorer_widget(tiny_modelset, brief):
    return explorer.AlignedFilterExplorer(tiny_modelset, brief.net)


# --- the alignment view -------------------------------------------------------------------------

@pytest.mark.parametrize("layer", ["conv1.weight", "layer1.0.conv2.weight", "layer3.0.conv1.weight"])
def test_view_matches_the_branch(tiny_modelset, brief, layer):
    theta = tiny_modelset.conv_weights[layer][4]
    view = explorer.branch_view(brief.net, layer, theta)
    branch = brief.net.branch(layer)
    with torch.no_grad():
        expected = branch.similarity(theta[None].float())[0].numpy()
    np.testing.assert_allclose(view.sorted_scores, expected, rtol=1e-4, atol=1e-5)
    assert view.channel_alignment == (layer != "conv1.weight")


@pytest.mark.parametrize("reference", [0, 3])
def test_order_is_a_permutation_sorting_the_reference_scores(tiny_modelset, brief, reference):
    layer = "layer2.0.conv2.weight"
    view = explorer.branch_view(brief.net, layer, tiny_modelset.conv_weights[layer][0], reference)
    assert sorted(view.order.tolist()) == list(range(view.filters))
    column = view.scores[view.order, reference]
    assert np.all(np.diff(column) <= 0)
    np.testing.assert_allclose(column, view.sorted_scores[:, reference])


def test_aligned_filters_are_the_stored_filters_with_matched_channels(tiny_modelset, brief):
    layer = "layer2.1.conv1.weight"
    view = explorer.branch_view(brief.net, layer, tiny_modelset.conv_weights[layer][2], 1)
    for i, g in enumerate(view.order):
        np.testing.assert_array_equal(view.aligned[i], view.raw[g][view.channel_match[i]])
    first = explorer.branch_view(brief.net, "conv1.weight", tiny_modelset.conv_weights["conv1.weight"][2])
    np.testing.assert_array_equal(first.aligned, first.raw[first.order])


@pytest.mark.parametrize("layer", ["conv1.weight", "layer1.1.conv1.weight", "layer3.2.conv2.weight"])
def test_aligned_view_ignores_filter_and_channel_order(tiny_modelset, brief, layer):
    theta = tiny_modelset.conv_weights[layer][7]
    g = torch.Generator().manual_seed(1)
    pf = torch.randperm(theta.shape[0], generator=g)
    pc = torch.randperm(theta.shape[1], generator=g) if layer != "conv1.weight" else torch.arange(theta.shape[1])
    shuffled = theta[pf][:, pc]
    a = explorer.branch_view(brief.net, layer, theta, 2)
    b = explorer.branch_view(brief.net, layer, shuffled, 2)
    np.testing.assert_allclose(b.sorted_scores, a.sorted_scores, atol=1e-9)
    np.testing.assert_array_equal(b.aligned, a.aligned)
    np.testing.assert_array_equal(pf.numpy()[b.order], a.order)  # same filters, named by their old index


def test_view_rejects_mismatched_shapes():
    from lpsbook.core.errors import LpsbookError

    with pytest.raises(LpsbookError, match="same c"):
        explorer.aligned_view(np.zeros((4, 3, 3, 3)), np.zeros((2, 2, 3, 3)), True)
    with pytest.raises(LpsbookError, match="reference"):
        explorer.aligned_view(np.zeros((4, 3, 3, 3)), np.zeros((2, 3, 3, 3)), True, reference=2)


# --- the briefly trained second-order network --------------------------------------------------

def test_train_briefly_gives_one_branch_per_layer(tiny_modelset, brief):
    assert brief.net.names == conv_layers()
    assert set(brief.heldout_top1) == set(conv_layers())
    assert all(0.0 <= v <= 1.0 for v in brief.heldout_top1.values())
    assert brief.chance == pytest.approx(1 / len(tiny_modelset.preset.tasks))
    assert all(b.phi.shape[0] == 8 for b in brief.net.branches)
    # held out = the test side of the classification split that chapters 5-6 use
    assert brief.heldout == results.classification_split(tiny_modelset, 0)[1].tolist()


def test_train_briefly_cache_round_trip(tiny_modelset, tmp_path):
    first = alignment.train_briefly(tiny_modelset, epochs=1, cache_root=tmp_path)
    assert len(list((tmp_path / "results").glob("tiny-brief-lps-*.json"))) == 1
    again = alignment.train_briefly(tiny_modelset, epochs=1, cache_root=tmp_path)
    for a, b in zip(first.net.branches, again.net.branches):
        torch.testing.assert_close(a.phi, b.phi)
    assert again.heldout_top1 == first.heldout_top1


# --- the widget ----------------------------------------------------------------------------------

def test_explorer_follows_the_layer(tiny_modelset, explorer_widget):
    ex = explorer_widget
    for layer in ("layer3.1.conv1.weight", "conv1.weight", "layer2.0.conv1.weight"):
        ex.layer.value = layer
        g, c = tiny_modelset.conv_weights[layer].shape[1:3]
        assert ex.view.layer == layer and ex.view.filters == g and ex.view.raw.shape[1] == c
        assert ex.figure.data[0].z.shape == filterplots.filter_grid(ex.view.raw).shape
        np.testing.assert_array_equal(ex.view.raw, tiny_modelset.conv_weights[layer][ex.model_index].numpy())


def test_explorer_follows_task_and_seed(tiny_modelset, explorer_widget):
    ex = explorer_widget
    ex.task.value = 2
    assert tiny_modelset.meta.loc[ex.model_index, "task_id"] == 2
    ex.seed.value = 1
    row = tiny_modelset.meta.loc[ex.model_index]
    assert (row["task_id"], row["seed"]) == (2, 1)
    ex.task.value = 0  # the seed is kept when the new task has it
    row = tiny_modelset.meta.loc[ex.model_index]
    assert (row["task_id"], row["seed"]) == (0, 1)
    assert "task 0 (0 vs 1), seed 1" in ex.describe()


def test_explorer_reference_reorders_the_filters(explorer_widget):
    ex = explorer_widget
    ex.layer.value = "layer1.2.conv1.weight"
    assert ex.reference.max == ex.net.branch(ex.layer.value).phi.shape[0] - 1
    orders = {}
    for ref in (0, ex.reference.max):
        ex.reference.value = ref
        assert ex.view.reference == ref
        assert np.all(np.diff(ex.view.scores[ex.view.order, ref]) <= 0)
        orders[ref] = list(ex.figure.layout.xaxis2.ticktext)
        assert orders[ref] == [str(i) for i in ex.view.order]
    assert f"g′={ex.reference.max}" in ex.figure.layout.annotations[1].text


def test_explorer_displays_as_a_widget(explorer_widget):
    bundle = explorer_widget._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle


# --- figures -------------------------------------------------------------------------------------

def test_filter_grid_places_every_tile():
    w = np.arange(3 * 2 * 3 * 3, dtype=np.float32).reshape(3, 2, 3, 3)
    grid = filterplots.filter_grid(w)
    assert grid.shape == (2 * 4 - 1, 3 * 4 - 1)
    np.testing.assert_array_equal(grid[4:7, 8:11], w[2, 1])  # channel 1 row, filter 2 column
    assert np.isnan(grid[3]).all() and np.isnan(grid[:, 3]).all()


def test_alignment_view_figure(tiny_modelset, brief):
    layer = "layer1.0.conv2.weight"
    view = explorer.branch_view(brief.net, layer, tiny_modelset.conv_weights[layer][0])
    fig = filterplots.alignment_view_figure(view, title="t")
    assert [t.type for t in fig.data] == ["heatmap"] * 4
    np.testing.assert_array_equal(fig.data[3].z, view.sorted_scores.T)
    assert list(fig.layout.xaxis2.ticktext) == [str(i) for i in view.order]
    assert "Eq. 6" in fig.layout.annotations[2].text
    first = explorer.branch_view(brief.net, "conv1.weight", tiny_modelset.conv_weights["conv1.weight"][0])
    assert "Eq. 7" in filterplots.alignment_view_figure(first).layout.annotations[2].text


def test_alignment_explorer_figure_menus_and_sliders(tiny_modelset, brief):
    layers = ["conv1.weight", "layer2.0.conv1.weight", "layer3.2.conv2.weight"]
    views = explorer.explorer_views(tiny_modelset, brief.net, [(0, 0), (0, 1), (2, 0)], layers)
    fig = filterplots.alignment_explorer_figure(views, title="explore")
    models = list(dict.fromkeys(m for m, _ in views))
    per = filterplots.TRACES_PER_STATE
    assert len(fig.data) == per * len(models) * len(layers)
    assert sum(bool(t.visible) for t in fig.data) == per
    (menu,) = fig.layout.updatemenus
    assert [b.label for b in menu.buttons] == models
    assert len(fig.layout.sliders) == len(models)
    assert [s.visible for s in fig.layout.sliders] == [True, False, False]
    for mi, (button, slider) in enumerate(zip(menu.buttons, fig.layout.sliders)):
        assert [s.label for s in slider.steps] == [l.removesuffix(".weight") for l in layers]
        switch = button.args[1]
        assert [switch[f"sliders[{k}].visible"] for k in range(len(models))] == [k == mi for k in range(len(models))]
        for li, step in enumerate(slider.steps):
            shown = [i for i, v in enumerate(step.args[0]["visible"]) if v]
            start = per * (mi * len(layers) + li)
            assert shown == list(range(start, start + per))
            view = views[(models[mi], layers[li])]
            np.testing.assert_array_equal(fig.data[start + 1].z, filterplots.filter_grid(view.aligned, gap=0))
            np.testing.assert_array_equal(fig.data[start + 3].z, view.sorted_scores.T)
            assert step.args[1]["xaxis2.ticktext"] == [str(i) for i in view.order]


def test_alignment_explorer_figure_needs_every_pair(tiny_modelset, brief):
    views = explorer.explorer_views(tiny_modelset, brief.net, [(0, 0), (1, 0)], ["conv1.weight", "layer1.0.conv1.weight"])
    del views[next(iter(views))]
    with pytest.raises(ValueError, match="lack"):
        filterplots.alignment_explorer_figure(views)


def test_other_figures(tiny_modelset, brief):
    views = explorer.explorer_views(tiny_modelset, brief.net, [(0, 0), (1, 0)], ["layer1.0.conv1.weight"])
    by_model = {m: v for (m, _), v in views.items()}
    assert len(filterplots.aligned_filters_figure(by_model).data) == 4
    assert len(filterplots.score_matrices_figure(by_model).data) == 4
    assert len(filterplots.second_order_filters_figure(brief.net.branches[1].phi).data) == 1
    w = tiny_modelset.conv_weights["layer1.0.conv1.weight"][0]
    fig = filterplots.before_after_figure([{"name": "a", "before": w, "after": w.flip(0), "filter_labels": [3, 2, 1, 0]}])
    assert len(fig.data) == 2 and list(fig.layout.xaxis2.ticktext) == ["3", "2", "1", "0"]
    z = torch.randn(10, 2)
    fig = viz.logits_scatter(z, {"same": z, "other": z.flip(1)})
    assert [t.name for t in fig.data][:2] == ["same", "other"] and len(fig.data) == 3
    fig = viz.layer_similarity_figure(conv_layers(), {"before": np.zeros(19), "after": np.ones(19)})
    assert len(fig.data) == 2 and len(fig.data[0].x) == 19
    fig = viz.spec_figure(symmetry.resnet20_spec(), conv_layers())
    text = np.asarray(fig.data[0].text)
    assert text.shape == (19, 12)
    assert (text == "out").sum() == 19 and (text == "in").sum() == 18  # conv1 reads the image


# --- the symmetry helpers of chapters 1 and 2 ---------------------------------------------------

def _inputs():
    return torch.randn(12, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def test_permute_group_whole_is_a_symmetry_and_part_is_not(tiny_modelset):
    spec, state = symmetry.resnet20_spec(), tiny_modelset.state_dict(0)
    net = tiny_modelset.model(0)
    perm = torch.tensor([1, 0, 3, 2])
    full = symmetry.permute_group(state, spec, "layer1.0.inner", perm)
    expected = symmetry.permute_state(state, {"layer1.0.inner": perm}, spec)
    assert all(torch.equal(full[k], expected[k]) for k in state)
    assert demos.compare_outputs(net, state, full, _inputs())["max_abs_diff"] < 1e-4
    part = symmetry.permute_group(state, spec, "layer1.0.inner", perm, keys=["layer1.0.conv1.weight"])
    assert torch.equal(part["layer1.0.bn1.weight"], state["layer1.0.bn1.weight"])
    assert not torch.equal(part["layer1.0.conv1.weight"], state["layer1.0.conv1.weight"])
    assert demos.compare_outputs(net, state, part, _inputs())["max_abs_diff"] > 1e-3
    with pytest.raises(KeyError):
        symmetry.permute_group(state, spec, "layer1.0.inner", perm, keys=["fc.weight"])


def test_spec_table_and_plain_chain():
    from lpsbook.core.nets import init_state

    table = demos.spec_table(symmetry.resnet20_spec(), init_state(8, 1, 0))
    assert len(table) == 12 and table["size"].tolist()[:3] == [8, 16, 32]
    assert "conv1" in table.loc[0, "filters of"] and "fc" in table.loc[2, "also moves"]
    net, spec = demos.plain_chain(channels=(3, 5), image_size=8)
    assert spec.names == ["P0", "P1"]
    state = net.state_dict()
    perms = symmetry.random_permutations(spec, state, torch.Generator().manual_seed(0))
    out = demos.compare_outputs(net, state, symmetry.permute_state(state, perms, spec), _inputs())
    assert out["max_abs_diff"] < 1e-5 and out["same_predictions"] == 1.0


def test_layer_similarities_of_identical_states():
    state = ResNet20(4, 1).state_dict()
    sims = demos.layer_similarities(state, state, conv_layers())
    assert len(sims) == 19 and np.allclose(sims, 1.0)


def test_score_matrices_match_the_branch_for_a_batch(tiny_modelset, brief):
    layer = "layer2.2.conv1.weight"
    thetas = tiny_modelset.conv_weights[layer]
    raw, srt = alignment.score_matrices(brief.net, layer, thetas, chunk=4)
    branch = brief.net.branch(layer)
    with torch.no_grad():
        expected = branch.similarity(thetas.float()).double()
    torch.testing.assert_close(srt, expected, rtol=1e-4, atol=1e-5)
    view = explorer.branch_view(brief.net, layer, thetas[5])
    np.testing.assert_allclose(raw[5].numpy(), view.scores, atol=1e-12)


def test_alignment_agreement_table(tiny_modelset, brief):
    rows = [0, 1, 3, 4, 6, 7]
    table = alignment.alignment_agreement(tiny_modelset, brief.net, layers=conv_layers()[:3], rows=rows)
    assert list(table.index) == ["conv1", "layer1.0.conv1", "layer1.0.conv2"]
    assert set(table.columns) == {"1-NN stored order", "1-NN sorted", "gap stored order", "gap sorted"}
    assert ((table[["1-NN stored order", "1-NN sorted"]] >= 0) & (table[["1-NN stored order", "1-NN sorted"]] <= 1)).all().all()
    assert table.attrs["chance"] == pytest.approx(1 / 5)  # each model has 1 same-task partner among 5 others


def test_matched_similarities_recover_scrambled_copies(tiny_modelset):
    spec, ref = symmetry.resnet20_spec(), tiny_modelset.state_dict(0)
    g = torch.Generator().manual_seed(3)
    copies = [symmetry.permute_state(ref, symmetry.random_permutations(spec, ref, g), spec) for _ in range(2)]
    stacked = {k: torch.stack([c[k] for c in copies]) for k in ref}
    stored, matched = demos.matched_similarities(ref, stacked, spec, conv_layers())
    assert stored.shape == matched.shape == (2, 19)
    np.testing.assert_allclose(matched, 1.0, atol=1e-6)
    assert (stored < 0.999).any()


def test_weight_movement_figure_shows_every_layer_with_its_range():
    from lpsbook.show import viz

    moved = {"mean": {"conv1.weight": 1.0, "layer1.0.conv1.weight": 0.5},
             "min": {"conv1.weight": 0.8, "layer1.0.conv1.weight": 0.4},
             "max": {"conv1.weight": 1.3, "layer1.0.conv1.weight": 0.7}}
    trace = viz.weight_movement(moved).data[0]
    assert list(trace.x) == [1, 2] and list(trace.y) == [1.0, 0.5]  # numbered as in the paper
    assert list(trace.customdata) == ["conv1", "layer1.0.conv1"]  # the names, on hover
    assert list(trace.error_y.arrayminus) == pytest.approx([0.2, 0.1])
    assert list(trace.error_y.array) == pytest.approx([0.3, 0.2])


def test_chance_lines_are_drawn():
    import pandas as pd

    from lpsbook.show import viz

    table = pd.DataFrame({"top1 paper": [2.0], "top1 ours": [1.5], "top1 ours sd": [0.5]}, index=["random prediction"])
    fig = viz.paper_vs_ours(table, ["top1"], "t", chance={"top1": 2.0})
    assert [s.x0 for s in fig.layout.shapes] == [2.0]  # bars run across: chance is a vertical line
    result = {"results": {"LPS": {"conv1.weight": {"mean": 0.3, "std": 0.0}}}}
    assert [s.y0 for s in viz.per_branch(result, chance=2.0).layout.shapes] == [2.0]


def test_alignment_comparison_reads_the_held_out_models(tiny_modelset, brief):
    table = alignment.alignment_comparison(tiny_modelset, brief)
    assert list(table.columns) == ["trained φ, stored order", "trained φ, sorted (Eq. 8)", "random φ, sorted (Eq. 8)"]
    assert len(table) == 19 and ((table >= 0) & (table <= 1)).all().all()
    # one held-out model per task: no same-task neighbour exists, so chance is 0 and so is every rate
    assert table.attrs["chance"] == 0 and (table == 0).all().all()


# --- conv1 as colour patches, layer axes, tables ------------------------------------------------

def test_filter_patches_scale_each_filter_around_grey():
    w = np.zeros((2, 3, 2, 2))
    w[0, 0, 0, 0], w[0, 2, 1, 1] = 2.0, -1.0  # filter 0: red up, blue down; |max| 2
    w[1, 1, 0, 1] = 0.5  # filter 1: a little green, its own max
    patches = filterplots.filter_patches(w)
    assert patches.shape == (2, 2 * 3 - 1, 3) and patches.dtype == np.uint8
    assert patches[0, 0].tolist() == [255, 128, 128]  # +max in red, 0 is mid-grey
    assert patches[1, 1].tolist() == [128, 128, 64]  # -max/2 in blue
    assert patches[0, 4].tolist() == [128, 255, 128]  # filter 1 scaled on its own: 0.5 is full green
    assert (patches[:, 2] == 255).all()  # the gap between filters is white
    grey = filterplots.filter_patches(w[:, :1])
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    with pytest.raises(ValueError, match="first-layer"):
        filterplots.filter_patches(np.zeros((4, 8, 3, 3)))


@pytest.mark.parametrize("channels, word", [(3, "RGB"), (1, "grey")])
def test_filter_patches_figure_in_stored_and_aligned_order(channels, word):
    rng = np.random.default_rng(0)
    views = {f"model {i}": explorer.aligned_view(rng.normal(size=(6, channels, 3, 3)),
                                                 rng.normal(size=(4, channels, 3, 3)), channel_alignment=False)
             for i in range(2)}
    fig = filterplots.filter_patches_figure(views)
    assert [t.type for t in fig.data] == ["image"] * 4
    assert fig.layout.meta == {"figure": filterplots.PATCHES_META, "channels": channels} and word in fig.layout.title.text
    for i, v in enumerate(views.values()):
        np.testing.assert_array_equal(fig.data[2 * i].z, filterplots.filter_patches(v.raw))
        np.testing.assert_array_equal(fig.data[2 * i + 1].z, filterplots.filter_patches(v.aligned))
        stored, aligned = (fig.layout[f"xaxis{'' if k == 1 else k}"].ticktext for k in (2 * i + 1, 2 * i + 2))
        assert list(stored) == [str(j) for j in range(6)] and list(aligned) == [str(j) for j in v.order]


def test_explorer_shows_patches_for_the_first_layer_only(explorer_widget):
    explorer_widget.layer.value = "conv1.weight"
    patches = explorer_widget.patches
    assert patches is not None and {t.type for t in patches.data} == {"image"}
    np.testing.assert_array_equal(patches.data[1].z, filterplots.filter_patches(explorer_widget.view.aligned))
    explorer_widget.layer.value = "layer1.0.conv1.weight"
    assert explorer_widget.patches is None


def test_layer_axes_number_the_layers_as_the_paper_and_name_them_on_hover():
    layers = conv_layers()
    fig = viz.layer_similarity_figure(layers, {"a": np.arange(19.0)})
    assert list(fig.data[0].x) == list(range(1, 20)) and fig.data[0].customdata[8] == "layer2.0.conv2"
    assert "customdata" in fig.data[0].hovertemplate and list(fig.layout.xaxis.tickvals) == list(range(1, 20))
    some = [layers[i - 1] for i in (1, 2, 4, 19)]
    fig = viz.per_branch({"results": {"LPS": {n: {"mean": 0.5, "std": 0.1} for n in some}}})
    assert list(fig.data[0].x) == [1, 2, 4, 19] and list(fig.data[0].customdata)[-1] == "layer3.2.conv2"
    assert fig.layout.xaxis.range == (0.5, 19.5)  # the same axis whichever branches were run


def test_wrap_breaks_at_spaces_within_the_width():
    text = "task 0 (apple vs aquarium_fish), seed 0"
    lines = viz.wrap(text, 16).split("<br>")
    assert " ".join(lines) == text and all(len(line) <= 16 for line in lines) and len(lines) == 3
    assert viz.wrap("short", 16) == "short"


def test_layer_table_labels_rows_by_number_and_name():
    import pandas as pd

    table = pd.DataFrame({"rate": [0.25, 0.5]}, index=["conv1", "layer1.0.conv2.weight"])
    shown = tables.layer_table(table)
    assert list(shown.data.index) == ["1\u00a0·\u00a0conv1", "3\u00a0·\u00a0layer1.0.conv2"]  # never broken in two
    assert shown.data["rate"].tolist() == [25.0, 50.0] and "<table" in shown.to_html()
