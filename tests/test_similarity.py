import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from sklearn.metrics.pairwise import laplacian_kernel, linear_kernel, rbf_kernel

from lpsbook.core.errors import LpsbookError
from lpsbook.methods.similarity import (
    MEASURES,
    Measure,
    pairwise_matrix,
    similarity,
    similarity_matrix,
)

N, D = 24, 10


def feats(seed, n=N, d=D):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64)


def orthogonal(d, seed):
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


@pytest.mark.parametrize("name", ["cka_linear", "cka_rbf", "dds_none_linear"])
def test_cka_identity_rotation_scaling(name):
    x = feats(0)
    y = torch.relu(x @ feats(1, D, 7))  # a related, narrower representation
    base = similarity(x, y, name)
    assert similarity(x, x, name) == pytest.approx(1.0, abs=1e-12)
    assert 0 < base < 1
    q = orthogonal(D, 2)
    assert similarity(x @ q, y, name) == pytest.approx(base, abs=1e-10)
    assert similarity(3.7 * x, y, name) == pytest.approx(base, abs=1e-10)
    assert similarity(x, 0.05 * y, name) == pytest.approx(base, abs=1e-10)
    assert similarity(x @ q * 2.0, y, name) == pytest.approx(base, abs=1e-10)


def test_linear_cka_by_hand():
    x = np.array([[1, 2], [0, 1], [3, -1], [2, 2], [-1, 0]], dtype=float)
    y = np.array([[2, 0, 1], [1, 1, 0], [0, 3, 1], [1, 0, 2], [0, 0, 1]], dtype=float)
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n
    k, l = x @ x.T, y @ y.T

    def hsic(a, b):
        return np.trace(a @ h @ b @ h) / (n - 1) ** 2

    expected = hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))
    assert similarity(x, y, "cka_linear") == pytest.approx(expected, rel=1e-12)
    # the linear-CKA closed form ||Yc' Xc||^2 / (||Xc' Xc|| ||Yc' Yc||) agrees
    xc, yc = x - x.mean(0), y - y.mean(0)
    closed = (np.linalg.norm(yc.T @ xc) ** 2
              / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc)))
    assert expected == pytest.approx(closed, rel=1e-12)


def test_unbiased_cka_by_hand():
    x, y = feats(3, 8, 3).numpy(), feats(4, 8, 5).numpy()
    n = len(x)

    def hsic_u(k, l):  # Song et al. 2012 unbiased HSIC, written out
        k, l = k - np.diag(np.diag(k)), l - np.diag(np.diag(l))
        one = np.ones(n)
        return (np.trace(k @ l) + one @ k @ one * (one @ l @ one) / ((n - 1) * (n - 2))
                - 2 / (n - 2) * one @ k @ l @ one) / (n * (n - 3))

    k, l = x @ x.T, y @ y.T
    expected = hsic_u(k, l) / np.sqrt(hsic_u(k, k) * hsic_u(l, l))
    assert similarity(x, y, "dds_none_linear") == pytest.approx(expected, rel=1e-10)


def test_rsa_is_spearman_of_rdm_triangles():
    x, y = feats(5), feats(6, d=4)
    iu = np.triu_indices(N, 1)
    rx = 1 - np.corrcoef(x.numpy())
    ry = 1 - np.corrcoef(y.numpy())
    expected = spearmanr(rx[iu], ry[iu]).statistic
    assert similarity(x, y, "rsa") == pytest.approx(expected, rel=1e-10)


def test_spearman_handles_ties():
    x = torch.tensor([[0.0], [0.0], [1.0], [1.0], [3.0]], dtype=torch.float64)
    y = torch.tensor([[0.0], [1.0], [1.0], [2.0], [2.5]], dtype=torch.float64)
    m = Measure("none", "euclidean", "spearman")
    iu = np.triu_indices(5, 1)
    dx = np.abs(x.numpy() - x.numpy().T)[iu]
    dy = np.abs(y.numpy() - y.numpy().T)[iu]
    assert similarity(x, y, m) == pytest.approx(spearmanr(dx, dy).statistic, rel=1e-12)


@pytest.mark.parametrize("name", sorted(MEASURES))
def test_invariant_to_permuting_units(name):
    x, y = feats(7), feats(8, d=6)
    perm = torch.randperm(D, generator=torch.Generator().manual_seed(9))
    assert similarity(x[:, perm], y, name) == pytest.approx(similarity(x, y, name), abs=1e-10)
    both = torch.stack([x, x[:, perm]])
    assert torch.allclose(pairwise_matrix(both, name)[0], pairwise_matrix(both, name)[1],
                          atol=1e-12)


def test_pearson_rdm_matches_rsatoolbox():
    import rsatoolbox

    x = feats(10, d=15)
    rdm = rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(x.numpy()), method="correlation")
    ours = pairwise_matrix(x[None], Measure("none", "pearson", "spearman"))[0]
    np.testing.assert_allclose(ours.numpy(), rdm.get_matrices()[0], atol=1e-12)


@pytest.mark.parametrize("f, gamma, ref", [
    ("linear", None, lambda x, g: linear_kernel(x)),
    ("rbf", 0.07, lambda x, g: rbf_kernel(x, gamma=g)),
    ("laplacian", 0.2, lambda x, g: laplacian_kernel(x, gamma=g)),
])
def test_kernels_match_sklearn(f, gamma, ref):
    x = feats(11)
    ours = pairwise_matrix(x[None], Measure("none", f, "cka", gamma=gamma))[0]
    np.testing.assert_allclose(ours.numpy(), ref(x.numpy(), gamma), rtol=1e-10, atol=1e-12)


def test_median_heuristic_and_distances():
    x = feats(12)
    d2 = torch.cdist(x, x) ** 2
    med = float(np.median(d2[tuple(torch.triu_indices(N, N, 1))].numpy()))  # over pairs i < j
    rbf = pairwise_matrix(x[None], Measure("none", "rbf", "cka"))[0]
    torch.testing.assert_close(rbf, torch.exp(-d2 / (2 * med)))
    eu = pairwise_matrix(x[None], Measure("none", "euclidean", "cka"))[0]
    torch.testing.assert_close(eu, torch.cdist(x, x))
    xn = x / x.norm(dim=1, keepdim=True)
    cos = pairwise_matrix(x[None], Measure("none", "cosine", "cka"))[0]
    torch.testing.assert_close(cos, 1 - xn @ xn.T)
    zs = pairwise_matrix(x[None], Measure("zscore", "linear", "cka"))[0]
    z = (x - x.mean(0)) / x.std(0, unbiased=False)
    torch.testing.assert_close(zs, z @ z.T)


def models(k=5):
    base = feats(20)
    return [torch.tanh(base @ feats(21 + i, D, D) * (0.3 + 0.2 * i)) + 0.1 * feats(40 + i)
            for i in range(k)]


@pytest.mark.parametrize("name", sorted(MEASURES))
def test_similarity_matrix_batched_equals_pairwise(name):
    ms = models()
    s = similarity_matrix(torch.stack(ms), name, batch=2)
    assert s.shape == (5, 5) and s.dtype == torch.float64
    torch.testing.assert_close(s, s.T, rtol=0, atol=0)
    torch.testing.assert_close(torch.diagonal(s), torch.ones(5, dtype=torch.float64))
    for i in range(5):
        for j in range(i + 1, 5):
            assert s[i, j].item() == pytest.approx(similarity(ms[i], ms[j], name), abs=1e-10)


def test_similarity_matrix_mixed_widths():
    ms = models(4)
    ms[1], ms[3] = ms[1][:, :4], torch.cat([ms[3], ms[0]], 1)
    s = similarity_matrix(ms, "dds_zscore_laplacian", device="cpu")
    assert s[1, 3].item() == pytest.approx(similarity(ms[1], ms[3], "dds_zscore_laplacian"))
    s32 = similarity_matrix([m.float().numpy() for m in ms], "dds_zscore_laplacian",
                            dtype=torch.float32)
    torch.testing.assert_close(s32, s, atol=1e-4, rtol=0)


def test_measure_validation():
    assert Measure("zscore", "rbf", "spearman").name == "zscore-rbf-spearman"
    for bad in [dict(normalisation="l2"), dict(f="cityblock"), dict(g="cosine"),
                dict(f="linear", gamma=1.0), dict(f="rbf", gamma=-1.0)]:
        kw = dict(normalisation="none", f="rbf", g="cka") | bad
        with pytest.raises(LpsbookError, match=next(iter(bad))):
            Measure(**kw)
    with pytest.raises(LpsbookError, match="measure"):
        similarity(feats(0), feats(1), "nope")


@pytest.mark.parametrize("call, match", [
    (lambda: similarity(feats(0)[None], feats(1), "rsa"), "features_a"),
    (lambda: similarity(feats(0), feats(1, n=N - 1), "rsa"), "features_b"),
    (lambda: similarity(feats(0, n=3), feats(1, n=3), "rsa"), "features_a"),
    (lambda: similarity(feats(0), feats(1)[:, 0], "rsa"), "features_b"),
    (lambda: similarity_matrix(feats(0), "rsa"), "features"),
    (lambda: similarity_matrix([feats(0), feats(1, n=N + 1)], "rsa"), r"features\[1\]"),
    (lambda: similarity_matrix([feats(0), feats(1)[None]], "rsa"), r"features\[1\]"),
    (lambda: similarity_matrix([feats(0), feats(1) * np.nan], "rsa"), r"features\[1\]"),
    (lambda: similarity_matrix(torch.stack([feats(0)] * 2), "rsa", batch=0), "batch"),
    (lambda: similarity_matrix([], "rsa"), "features"),
    (lambda: pairwise_matrix(feats(0), "rsa"), "features"),
])
def test_bad_input(call, match):
    with pytest.raises(LpsbookError, match=match):
        call()


def test_packed_features_equal_one_model_at_a_time_and_are_remembered():
    from lpsbook.methods import similarity
    from lpsbook.core.nets import ResNet20, init_state

    states = [init_state(4, 3, seed) for seed in range(7)]
    for s in states:  # non-trivial BatchNorm statistics, as in a trained model
        for k in s:
            if k.endswith("running_mean") or k.endswith("running_var"):
                s[k] += torch.rand_like(s[k])
    stacked = {k: torch.stack([s[k] for s in states]) for k in states[0]}
    images = torch.randint(0, 256, (9, 3, 12, 12), dtype=torch.uint8)
    mean, std = torch.full((3,), 120.0 / 255), torch.full((3,), 60.0 / 255)
    packed = similarity.models_features(stacked, images, mean, std, pack=3, batch=4)  # ragged packs and batches
    net = ResNet20(4, 3)
    for i, s in enumerate(states):
        net.load_state_dict(s)
        one = similarity.penultimate_features(net, images, mean, std)
        assert torch.allclose(packed[i], one, atol=1e-5, rtol=1e-4)
    method = similarity.ActivationSimilarity("cka_linear", images, mean, std)
    first = method.features(stacked)
    assert torch.equal(first, packed)
    assert method.features(stacked) is first  # the second measure on the same models computes nothing
    stacked["conv1.weight"] = stacked["conv1.weight"] * 2
    assert method.features(stacked) is not first  # other weights, other features
