"""Train many independent first-order models in one step.

Models are packed into a :class:`~lpsbook.core.nets.PackedResNet20` (grouped
convolutions, per-model BatchNorm).  The loss is the **sum over models of
each model's mean loss**, so every model receives exactly the gradient it
would receive alone; SGD's momentum and weight decay act element-wise, so
the update is the same too.  Each model draws its batches and augmentations
from its own generator (:class:`SampleStream`).

:func:`train_alone` is the plain one-model loop with the same recipe: the
reference the packed trainer is tested against, and the benchmark's baseline.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..core.data import Dataset, load_dataset, normalise
from ..core.errors import LpsbookError
from ..core.nets import PackedResNet20, ResNet20, init_state
from ..core.presets import Preset
from ..core.runtime import precision


@dataclass
class TrainedModel:
    """One trained model: its (task, seed), weights and accuracies."""

    task_id: int
    seed: int
    state: dict
    train_acc: float
    test_acc: float
    diverged: bool


def steps_per_epoch(preset: Preset, dataset: Dataset) -> int:
    """Steps of one epoch: the largest task's training set over the batch size."""
    n = max(len(dataset.task_indices(t, "train")) for t in preset.tasks)
    return math.ceil(n / preset.batch_size)


def packing(models: int, size: int) -> int:
    """The pack size that splits ``models`` into the fewest packs of at most ``size``, balanced."""
    packs = -(-models // size)
    return -(-models // packs)


def pack_size(preset: Preset, device: torch.device, image_size: int) -> int:
    """Models per pack: the preset's CPU figure, or what fits in free CUDA memory."""
    if device.type != "cuda":
        return preset.pack_size_cpu
    free, _ = torch.cuda.mem_get_info(device)
    # activations kept for backward: ~60 float-sized values per first-stage
    # channel and pixel of every image in the batch (measured order of magnitude)
    per_model = preset.batch_size * image_size ** 2 * preset.width * 60 * 4
    return max(1, min(preset.num_models, int(0.6 * free / per_model)))


# --- batches: each model's own stream of samples, augmented on the fly ------------------------------

class SampleStream:
    """One model's endless stream of training samples and augmentations.

    The stream is a concatenation of random permutations of the task's
    training images; with each permutation the crop offsets and flips of its
    samples are drawn too.  All draws come from the model's own generator,
    seeded by the model's seed, so the stream is the same whichever models
    it is trained with.
    """

    def __init__(self, indices: torch.Tensor, seed: int, crop_padding: int, flip: bool):
        self.indices = indices.cpu()
        self.generator = torch.Generator().manual_seed(seed)
        self.pad = crop_padding
        self.flip = flip
        self._buf = (torch.empty(0, dtype=torch.long),) * 3 + (torch.empty(0, dtype=torch.bool),)

    def _refill(self):
        n, g = len(self.indices), self.generator
        perm = self.indices[torch.randperm(n, generator=g)]
        dy = torch.randint(0, 2 * self.pad + 1, (n,), generator=g)
        dx = torch.randint(0, 2 * self.pad + 1, (n,), generator=g)
        fl = torch.rand(n, generator=g) < 0.5
        if not self.flip:
            fl = torch.zeros(n, dtype=torch.bool)
        self._buf = tuple(torch.cat([a, b]) for a, b in zip(self._buf, (perm, dy, dx, fl)))

    def take(self, k: int):
        """Next ``k`` samples: (indices, dy, dx, flip), each of length ``k``."""
        while len(self._buf[0]) < k:
            self._refill()
        out = tuple(b[:k] for b in self._buf)
        self._buf = tuple(b[k:] for b in self._buf)
        return out


def augment_batch(padded: torch.Tensor, idx, dy, dx, flip, size: int) -> torch.Tensor:
    """Crop and flip many samples at once, on the device of ``padded``.

    ``padded`` is the whole dataset, uint8 ``[n, C, H+2p, W+2p]``; ``idx``,
    ``dy``, ``dx``, ``flip`` have any common shape ``S``; returns uint8
    ``[*S, C, size, size]``.
    """
    shape = idx.shape
    idx, dy, dx, flip = (t.reshape(-1).to(padded.device) for t in (idx, dy, dx, flip))
    ar = torch.arange(size, device=padded.device)
    rows = dy[:, None] + ar  # [B, H]
    cols = dx[:, None] + ar  # [B, W]
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    C = padded.shape[1]
    ch = torch.arange(C, device=padded.device)
    out = padded[idx[:, None, None, None], ch[None, :, None, None], rows[:, None, :, None], cols[:, None, None, :]]
    return out.reshape(*shape, C, size, size)


def pad_images(images: torch.Tensor, padding: int) -> torch.Tensor:
    """Zero-pad uint8 images ``[n, C, H, W]`` on every side."""
    return torch.nn.functional.pad(images, (padding,) * 4) if padding else images


class Recipe:
    """Data, schedule and batch assembly of a preset on a device, shared by the packed and the plain loop."""

    def __init__(self, preset: Preset, dataset: Dataset, device: torch.device):
        self.preset, self.dataset, self.device = preset, dataset, device
        self.padded = pad_images(dataset.train_images, preset.crop_padding).to(device)
        self.labels = dataset.train_labels.to(device)
        self.size = dataset.train_images.shape[-1]
        self.mean, self.std = dataset.mean.to(device), dataset.std.to(device)
        self.steps_per_epoch = steps_per_epoch(preset, dataset)
        self.total_steps = preset.epochs * self.steps_per_epoch

    def stream(self, task_id: int, seed: int) -> SampleStream:
        p = self.preset
        return SampleStream(self.dataset.task_indices(p.tasks[task_id], "train"),
                            model_rng_seed(p.task_number(task_id), seed),
                            p.crop_padding, p.flip)

    def batch(self, streams, positives: torch.Tensor, dtype=None):
        """Images ``[M, B, C, H, W]`` (normalised) and 0/1 labels ``[M, B]``."""
        draws = [s.take(self.preset.batch_size) for s in streams]
        idx, dy, dx, fl = (torch.stack(t) for t in zip(*draws))
        x = augment_batch(self.padded, idx, dy, dx, fl, self.size)
        x = normalise(x, self.mean, self.std, dtype)
        y = (self.labels[idx.to(self.device)] == positives[:, None]).long()
        return x, y

    def optimizer(self, params):
        p = self.preset
        opt = torch.optim.SGD(params, lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay)
        sched = torch.optim.lr_scheduler.MultiStepLR(
            opt, [round(m * self.steps_per_epoch) for m in p.milestones], gamma=0.1)
        return opt, sched


def model_rng_seed(task_id: int, seed: int) -> int:
    """The RNG seed of model (task, seed): distinct for every task and seed.

    Initial weights and the sample stream both come from it, so no two
    models of a set share an initialisation.
    """
    return 1_000_003 * task_id + seed


def _positives(preset, task_ids, device):
    return torch.tensor([preset.tasks[t][1] for t in task_ids], device=device)


@torch.no_grad()
def evaluate_packed(net: PackedResNet20, preset: Preset, dataset: Dataset, task_ids, split: str,
                    device, chunk: int = 512) -> torch.Tensor:
    """Accuracy of each packed model on its own task's ``split`` images, ``[M]``."""
    net.eval()
    images = (dataset.train_images if split == "train" else dataset.test_images).to(device)
    labels = (dataset.train_labels if split == "train" else dataset.test_labels).to(device)
    per_model = [dataset.task_indices(preset.tasks[t], split).to(device) for t in task_ids]
    longest = max(len(i) for i in per_model)
    idx = torch.stack([torch.cat([i, i[:1].expand(longest - len(i))]) for i in per_model])
    valid = torch.stack([torch.arange(longest, device=device) < len(i) for i in per_model])
    positives = _positives(preset, task_ids, device)
    mean, std = dataset.mean.to(device), dataset.std.to(device)
    correct = torch.zeros(len(task_ids), device=device)
    layout, autocast = precision(preset, device)  # evaluate as trained (in float32: 10 % more build time)
    for start in range(0, longest, chunk):
        sl = idx[:, start:start + chunk]
        x = normalise(images[sl], mean, std)  # [M, B, C, H, W]
        m, b = sl.shape
        x = x.transpose(0, 1).reshape(b, m * x.shape[2], *x.shape[3:]).to(net.fc_weight.dtype)
        with autocast:
            logits = net(x.contiguous(memory_format=layout))
        pred = logits.argmax(-1).transpose(0, 1)  # [M, B]
        y = (labels[sl] == positives[:, None]).long()
        correct += ((pred == y) & valid[:, start:start + chunk]).sum(1)
    net.train()
    return (correct / valid.sum(1)).cpu()


def train_pack(preset: Preset, dataset: Dataset, jobs, device="cpu", progress=None,
               steps: int | None = None, recipe: Recipe | None = None) -> list:
    """Train the models ``jobs = [(task_id, seed), ...]`` together.

    Parameters
    ----------
    steps : int, optional
        Train for this many steps instead of the preset's full schedule.
    progress : tqdm, optional
        Advanced by ``len(jobs) / steps`` after every step, so it counts models.
    recipe : Recipe, optional
        The preset's data and schedule on ``device``, when several packs share one.

    Returns
    -------
    list of TrainedModel, in the order of ``jobs``.
    """
    device = torch.device(device)
    recipe = recipe or Recipe(preset, dataset, device)
    task_ids = [t for t, _ in jobs]
    m = len(jobs)
    states = [init_state(preset.width, preset.in_channels, model_rng_seed(preset.task_number(t), s)) for t, s in jobs]
    net = PackedResNet20.from_state_dicts(states, preset.width, preset.in_channels).to(device)
    layout, autocast = precision(preset, device)
    net = net.to(memory_format=layout)
    streams = [recipe.stream(t, s) for t, s in jobs]
    positives = _positives(preset, task_ids, device)
    opt, sched = recipe.optimizer(net.parameters())
    total = recipe.total_steps if steps is None else steps
    bad = torch.zeros(m, dtype=torch.bool, device=device)
    for _ in range(total):
        x, y = recipe.batch(streams, positives)
        b = x.shape[1]
        x = x.transpose(0, 1).reshape(b, m * x.shape[2], *x.shape[3:])
        with autocast:
            logits = net(x.contiguous(memory_format=layout))  # [B, M, 2]
        per_sample = F.cross_entropy(logits.to(net.fc_weight.dtype).reshape(b * m, -1), y.t().reshape(-1), reduction="none")
        per_model = per_sample.view(b, m).mean(0)
        bad |= ~torch.isfinite(per_model.detach())
        opt.zero_grad(set_to_none=True)
        per_model.sum().backward()
        opt.step()
        sched.step()
        if progress is not None:
            progress.update(m / total)
    train_acc = evaluate_packed(net, preset, dataset, task_ids, "train", device)
    test_acc = evaluate_packed(net, preset, dataset, task_ids, "test", device)
    bad = bad.cpu()
    return [TrainedModel(t, s, st, float(tr), float(te), bool(bd))
            for (t, s), st, tr, te, bd in zip(jobs, net.state_dicts(), train_acc, test_acc, bad)]


MAX_ATTEMPTS = 3
SEED_STRIDE = 1000  # a diverged model is retrained with seed + SEED_STRIDE * attempt


def train_with_retries(preset: Preset, dataset: Dataset, jobs, device="cpu", progress=None,
                       recipe: Recipe | None = None):
    """Train ``jobs = [(task_id, seed), ...]`` together, retraining any that diverge.

    ``seed`` is the model's seed within its set; it is trained with
    ``seed + preset.seed_offset``.  A model whose loss became NaN/inf is
    trained again with ``+ SEED_STRIDE * attempt`` added; after
    :data:`MAX_ATTEMPTS` attempts an :class:`~lpsbook.core.errors.LpsbookError`
    says which models failed.

    Yields
    ------
    (TrainedModel, train_seed, seconds) for every model that trained,
    as soon as its pack is done: ``TrainedModel.seed`` is the set's seed,
    ``train_seed`` the seed it was trained with, ``seconds`` its share of
    the pack's time.
    """
    import time

    seeds = {job: job[1] + preset.seed_offset for job in jobs}
    attempt = 0
    while jobs:
        started = time.perf_counter()
        results = train_pack(preset, dataset, [(t, seeds[(t, s)]) for t, s in jobs], device,
                             progress=progress if attempt == 0 else None, recipe=recipe)
        retry, seconds = [], (time.perf_counter() - started) / len(jobs)
        for (t, s), res in zip(jobs, results):
            res.seed = s
            if res.diverged:
                retry.append((t, s))
            else:
                yield res, seeds[(t, s)], seconds
        attempt += 1
        if retry and attempt >= MAX_ATTEMPTS:
            names = ", ".join(f"task {t} seed {s}" for t, s in retry)
            raise LpsbookError(
                f"training diverged (NaN/inf loss) for {names} with {MAX_ATTEMPTS} different "
                f"seeds; lower the preset's learning rate (now {preset.lr}).")
        for job in retry:
            seeds[job] = job[1] + preset.seed_offset + SEED_STRIDE * attempt
        jobs = retry


def train_alone(preset: Preset, dataset: Dataset, task_id: int, seed: int, device="cpu",
                steps: int | None = None, recipe: Recipe | None = None) -> ResNet20:
    """Train one ResNet-20 with a plain loop and the same recipe as :func:`train_pack`."""
    device = torch.device(device)
    recipe = recipe or Recipe(preset, dataset, device)
    net = ResNet20(preset.width, preset.in_channels)
    net.load_state_dict(init_state(preset.width, preset.in_channels,
                                   model_rng_seed(preset.task_number(task_id), seed)))
    net.to(device).train()
    stream = recipe.stream(task_id, seed)
    positives = _positives(preset, [task_id], device)
    opt, sched = recipe.optimizer(net.parameters())
    for _ in range(recipe.total_steps if steps is None else steps):
        x, y = recipe.batch([stream], positives)
        loss = F.cross_entropy(net(x[0]), y[0])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return net


CIFAR100_TRAIN_IMAGES_PER_CLASS = 500


def steps_per_model(preset: Preset) -> int:
    """SGD steps one model of ``preset`` is trained for (epochs x batches of its two-class task).

    CIFAR-100's count comes from its fixed size, so the data need not be present.
    """
    import math

    p = preset
    if p.dataset == "cifar100":
        return p.epochs * math.ceil(2 * CIFAR100_TRAIN_IMAGES_PER_CLASS / p.batch_size)
    return p.epochs * steps_per_epoch(p, load_dataset(p))
