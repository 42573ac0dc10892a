"""Metrics against small cases worked out by hand."""
import math

import pytest
import torch

from lpsbook.core.errors import LpsbookError
from lpsbook.core.metrics import retrieval_metrics, spearman, topk_accuracy


def test_topk_hand_worked():
    # 4 models, 4 classes.  Ranking of the classes per row (best first):
    #   row 0: 0, 1, 2, 3   label 0 -> rank 1
    #   row 1: 3, 2, 1, 0   label 1 -> rank 3
    #   row 2: 1, 2, 0, 3   label 2 -> rank 2
    #   row 3: 0, 1, 2, 3   label 3 -> rank 4
    scores = torch.tensor([[0.9, 0.5, 0.2, 0.1],
                           [0.1, 0.2, 0.3, 0.4],
                           [0.3, 0.8, 0.5, 0.0],
                           [4.0, 3.0, 2.0, 1.0]])
    labels = torch.tensor([0, 1, 2, 3])
    acc = topk_accuracy(scores, labels, ks=(1, 2, 3, 4))
    # top1: row 0 only = 1/4; top2: rows 0, 2 = 2/4; top3: rows 0, 1, 2 = 3/4; top4: all.
    assert acc == pytest.approx({"top1": 0.25, "top2": 0.5, "top3": 0.75, "top4": 1.0})


def test_topk_k_beyond_classes_and_default_keys():
    scores = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.2, 0.1]])
    acc = topk_accuracy(scores, torch.tensor([0, 0, 1]))
    # top1: only row 1 (argmax 0, label 0); k = 5 and 10 exceed the 2 classes: every label is found.
    assert acc == pytest.approx({"top1": 1 / 3, "top5": 1.0, "top10": 1.0})


def test_topk_input_checks():
    with pytest.raises(LpsbookError, match="labels"):
        topk_accuracy(torch.zeros(3, 2), torch.tensor([0, 1]))
    with pytest.raises(LpsbookError, match="labels"):
        topk_accuracy(torch.zeros(2, 2), torch.tensor([0, 2]))
    with pytest.raises(LpsbookError, match="scores"):
        topk_accuracy(torch.zeros(3), torch.tensor([0, 1, 0]))


def _unit(angles_deg):
    a = torch.tensor(angles_deg, dtype=torch.float64) * math.pi / 180
    return torch.stack([torch.cos(a), torch.sin(a)], dim=1)


def test_retrieval_hand_worked():
    # Gallery: 4 unit vectors at angles 0, 60, 120, 180 degrees with labels A A B B
    # (A=0, B=1).  Cosine similarity falls with the angle between query and item.
    gallery = _unit([0, 60, 120, 180])
    g_labels = torch.tensor([0, 0, 1, 1])
    # q0 at 10 deg, label A: order 0(A) 60(A) 120(B) 180(B) -> relevance [1,1,0,0]
    #     first hit at rank 1; AP = (1/1 + 2/2)/2 = 1
    # q1 at 170 deg, label A: order 180(B) 120(B) 60(A) 0(A) -> relevance [0,0,1,1]
    #     first hit at rank 3; AP = (1/3 + 2/4)/2 = 5/12
    # q2 at 100 deg, label B: order 120(B) 60(A) 180(B) 0(A)
    #     (distances 20, 40, 80, 100) -> relevance [1,0,1,0]
    #     first hit at rank 1; AP = (1/1 + 2/3)/2 = 5/6
    # q3 at 50 deg, label B: order 60(A) 0(A) 120(B) 180(B)
    #     (distances 10, 50, 70, 130) -> relevance [0,0,1,1]
    #     first hit at rank 3; AP = (1/3 + 2/4)/2 = 5/12
    queries = _unit([10, 170, 100, 50])
    q_labels = torch.tensor([0, 0, 1, 1])
    out = retrieval_metrics(queries, q_labels, gallery, g_labels, ks=(1, 2, 3, 5))
    # rank1: q0, q2 = 2/4; rank2: same; rank3: all 4; rank5 (> gallery size): all.
    assert out["rank1"] == pytest.approx(0.5)
    assert out["rank2"] == pytest.approx(0.5)
    assert out["rank3"] == pytest.approx(1.0)
    assert out["rank5"] == pytest.approx(1.0)
    assert out["mAP"] == pytest.approx((1 + 5 / 12 + 5 / 6 + 5 / 12) / 4)


def test_retrieval_uses_cosine_not_length_and_skips_queries_without_match():
    gallery = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # q0 (label 0) points at item 0 but is long; q1 (label 1) is nearer item 0 (wrong);
    # q2 has label 7, absent from the gallery: it is left out.
    queries = torch.tensor([[5.0, 1.0], [0.6, 0.4], [1.0, 1.0]])
    out = retrieval_metrics(queries, torch.tensor([0, 1, 7]), gallery * 3, torch.tensor([0, 1]), ks=(1,))
    # q0: relevance [1, 0] -> rank 1, AP 1.  q1: relevance [0, 1] -> rank 2, AP 1/2.
    assert out == pytest.approx({"rank1": 0.5, "mAP": 0.75})


def test_retrieval_input_checks():
    e = torch.eye(2)
    with pytest.raises(LpsbookError, match="gallery_labels"):
        retrieval_metrics(e, torch.tensor([0, 1]), e, torch.tensor([0]))
    with pytest.raises(LpsbookError, match="query_emb"):
        retrieval_metrics(torch.ones(2, 3), torch.tensor([0, 1]), e, torch.tensor([0, 1]))
    with pytest.raises(LpsbookError, match="no query"):
        retrieval_metrics(e, torch.tensor([5, 6]), e, torch.tensor([0, 1]))


def test_spearman():
    # ranks of y = reversed ranks of x -> -1; a monotone map -> +1.
    assert spearman([1, 2, 3, 4], [10, 5, 2, 1]) == pytest.approx(-1.0)
    assert spearman([0.1, 0.5, 0.2], [1, 100, 5]) == pytest.approx(1.0)
    # x ranks 1 2 3 4, y ranks 1 3 2 4: d^2 = 0+1+1+0 = 2, rho = 1 - 6*2/(4*15) = 0.8
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert isinstance(spearman([1, 2, 3], [3, 1, 2]), float)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
