"""The one interface of every similarity method, weights- or activations-based.

In scikit-learn's style: settings go to ``__init__``; :meth:`~SimilarityMethod.fit`
takes the models and their task labels, infers the classes and returns the
method; what fitting learns ends in ``_`` (``classes_``, ...).  Models are
given as a stacked state dict ``{key: [models, ...]}``, like
:attr:`lpsbook.training.modelset.ModelSet.state`.

After ``fit``:

``scores(models)``
    ``[models, len(classes_)]``: how much each model looks like each class
    (larger = more alike; columns follow ``classes_``).  Top-k task
    classification reads it.
``predict(models)``
    The best-scoring class of each model.
``embed(models)``
    ``[models, d]`` unit rows: the cosine similarity of two models is the dot
    product of their rows.  Retrieval reads it; it also works for tasks never
    seen in ``fit``.
``task_similarity(models, task_labels)``
    ``(tasks, [T, T])``: how alike the tasks of some models are, from their
    models' embeddings.  The transferability and relatedness protocols read it.

A new method subclasses :class:`SimilarityMethod`, implements ``_fit``,
``_embed`` and (when it has a classifier) ``_scores``, and gets one line in
:data:`lpsbook.methods.registry.REGISTRY`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core.errors import LpsbookError


def num_models(models: dict) -> int:
    """How many models a stacked state dict holds (axis 0 of every tensor)."""
    if not isinstance(models, dict) or not models:
        raise LpsbookError("models must be a non-empty stacked state dict {key: [models, ...]}")
    counts = {v.shape[0] for v in models.values()}
    if len(counts) != 1:
        raise LpsbookError(f"models: every tensor must have the same number of models (axis 0), got {sorted(counts)}")
    return counts.pop()


def check_labels(task_labels, m: int) -> torch.Tensor:
    """``task_labels`` as a long tensor of length ``m`` (one label per model)."""
    labels = torch.as_tensor(task_labels).reshape(-1)
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise LpsbookError(f"task_labels must be integers, got {labels.dtype}")
    labels = labels.long()
    if labels.numel() != m:
        raise LpsbookError(f"task_labels has {labels.numel()} entries but there are {m} models; give one per model")
    if labels.numel() and labels.min() < 0:
        raise LpsbookError("task_labels must be non-negative integers")
    return labels


def task_means(embeddings: torch.Tensor, task_labels: torch.Tensor) -> tuple:
    """``(tasks, [T, d])``: the tasks present and the unit-normalised mean embedding of each."""
    tasks = torch.unique(task_labels)
    means = torch.stack([embeddings[task_labels == t].mean(0) for t in tasks])
    return tasks, F.normalize(means.double(), dim=1)


class SimilarityMethod:
    """Base class of the similarity methods (see the module docstring).

    Class attributes
    ----------------
    reads : {"weights", "activations"}
        What of a model the method looks at.
    """

    reads = "weights"
    lazy_centroids = False  # True: the class means of the default scores are computed on the first scores()

    # --- what subclasses implement ---------------------------------------------------------
    def _fit(self, models: dict, y: torch.Tensor, n_classes: int):
        """Learn from ``models`` with labels ``y`` in ``0..n_classes-1`` (positions in ``classes_``)."""
        raise NotImplementedError

    def _embed(self, models: dict) -> torch.Tensor:
        raise NotImplementedError

    def _scores(self, models: dict) -> torch.Tensor:
        """Default: cosine similarity to each class's mean training embedding (nearest class mean)."""
        if self.centroids_ is None:  # lazy: the training models were kept for this
            self.centroids_ = task_means(self._embed(self.fit_models_), self.fit_labels_)[1]
            del self.fit_models_, self.fit_labels_
        return self._embed(models).double() @ self.centroids_.t()

    # --- the interface -----------------------------------------------------------------------
    def fit(self, models: dict, task_labels) -> "SimilarityMethod":
        """Fit on ``models`` (stacked state dict) with one task label each; returns self."""
        labels = check_labels(task_labels, num_models(models))
        self.classes_ = torch.unique(labels)
        y = torch.searchsorted(self.classes_, labels)
        self.fitted_ = False
        self._fit(models, y, len(self.classes_))
        if type(self)._scores is SimilarityMethod._scores:  # nearest class mean needs the class means
            self.centroids_ = None if self.lazy_centroids else task_means(self._embed(models), y)[1]
            if self.lazy_centroids:  # a method whose embedding is costly pays for them only if scores() is used
                self.fit_models_, self.fit_labels_ = models, y
        self.fitted_ = True
        return self

    def require_fit(self, what: str):
        """Raise a clear error when ``what`` is called before :meth:`fit`."""
        if not getattr(self, "fitted_", False):
            raise LpsbookError(f"{type(self).__name__}.{what}() called before fit(): fit the method first")

    def scores(self, models: dict) -> torch.Tensor:
        """``[models, len(classes_)]`` class scores, larger = more alike."""
        self.require_fit("scores")
        return self._scores(models)

    def predict(self, models: dict) -> torch.Tensor:
        """The best-scoring class of each model (a value of ``classes_``)."""
        return self.classes_[self.scores(models).argmax(1)]

    def embed(self, models: dict) -> torch.Tensor:
        """``[models, d]`` unit rows; cosine similarity = dot product."""
        self.require_fit("embed")
        return self._embed(models)

    def task_similarity(self, models: dict, task_labels) -> tuple:
        """``(tasks, [T, T])``: cosine similarity of the tasks' mean embeddings."""
        labels = check_labels(task_labels, num_models(models))
        tasks, means = task_means(self.embed(models), labels)
        return tasks, means @ means.t()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
