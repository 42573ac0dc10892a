"""LEEP and LogME, checked against their definitions."""
import numpy as np
import pytest
from scipy.stats import multivariate_normal

from lpsbook.core.metrics import leep, linear_evidence, logme


def test_leep_rewards_a_source_that_predicts_the_target():
    y = np.array([0, 0, 1, 1] * 25)
    sharp = np.stack([1 - y, y], 1) * 0.98 + 0.01  # the source's classes map onto the target's
    flat = np.full((100, 2), 0.5)
    assert leep(sharp, y) > -0.05
    assert leep(flat, y) == pytest.approx(np.log(0.5))
    assert leep(sharp[:, ::-1], y) == pytest.approx(leep(sharp, y))  # which source class is which does not matter


def test_linear_evidence_is_the_gaussian_marginal_likelihood():
    rng = np.random.default_rng(0)
    f, y = rng.normal(size=(30, 4)), rng.normal(size=30)
    alpha, beta = 0.7, 2.5
    cov = f @ f.T / alpha + np.eye(30) / beta
    assert linear_evidence(f, y, alpha, beta) == pytest.approx(multivariate_normal(np.zeros(30), cov).logpdf(y) / 30)


def test_logme_maximises_the_evidence_and_prefers_separable_features():
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 50)
    good = rng.normal(size=(100, 8)) + 3 * labels[:, None]
    bad = rng.normal(size=(100, 8))
    assert logme(good, labels) > logme(bad, labels)
    grid = [(a, b) for a in np.logspace(-3, 3, 13) for b in np.logspace(-3, 3, 13)]
    best = np.mean([max(linear_evidence(good, (labels == c).astype(float), a, b) for a, b in grid) for c in (0, 1)])
    assert logme(good, labels) >= best - 1e-3  # the fixed point is at least as good as a grid of (alpha, beta)
