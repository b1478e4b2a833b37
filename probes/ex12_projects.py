"""Probes for ex12_projects: run the submission's pipelines on data the grader made and return what
the grader needs to judge them (logits, predictions, samples, parameters), never a verdict.

The held-out labels (test images, test sentences) and every expected value stay in the grader. The
datasets, optimizers and the GAN's replay modules are this file's own classes; records they keep of
how the submission used them (passes over a dataset, gradients seen at an optimizer step) are
observations made next to student code and only choose hints or cross-check.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from ..arena import arena
from . import probe
from .common import _Projections, observe_errors, plain

# Taken at import, before any student module: defence in depth only (see each probe's "What it trusts").
_NO_GRAD = torch.no_grad
_ADAM = torch.optim.Adam
_SGD = torch.optim.SGD
_manual_seed = torch.manual_seed
_randn = torch.randn
_abs = torch.abs
_cat = torch.cat


class _Images(Dataset):
    """``(image, label)`` pairs from tensors; with ``rotate_after_first_pass`` the labels read after
    one full pass are ``(label + 1) % classes``, so validation accuracy falls after the first epoch and
    the best epoch is the first. It counts the items read (an observation for hints)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, classes: int = 10, rotate_after_first_pass: bool = False):
        self.x, self.y, self.classes, self.rotate = x, y, classes, rotate_after_first_pass
        self.reads = 0

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        label = self.y[i]
        if self.rotate and self.reads >= len(self.y):
            label = (label + 1) % self.classes
        self.reads += 1
        return self.x[i].clone(), label.clone()


def _floats(values: Any) -> Any:
    """A list of numbers as data (anything else by its type name)."""
    if isinstance(values, (list, tuple)):
        return [float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else plain(v) for v in values]
    return plain(values)


@probe
def run_classification(impl: ModuleType, x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor,
                       y_val: torch.Tensor, x_test: torch.Tensor, num_classes: int | None, epochs: int,
                       batch_size: int, lr: float, augment: bool, seed: int, val_subset: bool = False,
                       rotate_val: bool = False, runs: int = 1, defaults: bool = False,
                       last_without_augment: bool = False) -> dict[str, Any]:
    """``run_image_classification`` ``runs`` times on datasets of this file's ``_Images``; for each
    run the returned model's logits on the validation images and the test images (the test labels
    never come here), its mode, and what it reported (``best_acc``, ``history``).

    With ``val_subset`` the validation set is a ``Subset`` of a larger ``_Images`` (the validation
    images preceded by the test images, in reverse order). With ``rotate_val`` its labels change after
    the first pass (see ``_Images``). With ``defaults`` only the datasets and ``num_classes`` are
    passed (the other arguments keep the submission's defaults). With ``last_without_augment`` the last
    run has ``augment=False`` (same data, same seed).

    What it trusts: nothing the function returns except the model's outputs, which the grader scores
    against labels it kept; the reported numbers are returned for cross-checks only.
    """
    result: dict[str, Any] = {"error": None, "runs": []}
    for k in range(runs):
        if last_without_augment and k == runs - 1:
            augment = False
        classes = int(y_train.max()) + 1
        if val_subset:
            pool = _Images(_cat([x_test.flip(0), x_val]), _cat([torch.zeros(len(x_test), dtype=torch.int64), y_val]),
                           classes)
            val_set: Dataset = Subset(pool, list(range(len(x_test), len(x_test) + len(y_val))))
            counter = pool
        else:
            counter = _Images(x_val, y_val, classes, rotate_val)
            val_set = counter
        run: dict[str, Any] = {}
        with observe_errors(result, "error", impl):
            kwargs = {} if defaults else {"epochs": epochs, "batch_size": batch_size, "lr": lr, "augment": augment,
                                          "seed": seed}
            out = impl.run_image_classification(_Images(x_train, y_train, classes), val_set, num_classes, **kwargs)
            run["val_reads"] = counter.reads
            if not isinstance(out, dict):
                run["type"] = type(out).__name__
            else:
                run["keys"] = sorted(str(k) for k in out)
                model = out.get("model")
                run["best_acc"] = plain(out.get("best_acc"))
                history = out.get("history")
                run["history"] = ({str(k): _floats(v) for k, v in history.items()} if isinstance(history, dict)
                                  else plain(history))
                if isinstance(model, nn.Module):
                    run["training"] = bool(model.training)
                    with _NO_GRAD():
                        run["val_logits"] = model(x_val).detach().float()
                        run["test_logits"] = model(x_test).detach().float()
                else:
                    run["model_type"] = type(model).__name__
        result["runs"].append(run)
        if result["error"] is not None:
            break
    return result


# -- T12.2 sentiment ------------------------------------------------------------------------------------------
@probe
def sentiment_forward(impl: ModuleType, vocab_size: int, embed_dim: int, hidden_dim: int, num_classes: int | None,
                      tokens: torch.Tensor, lengths: torch.Tensor, extra_pad: int, seed: int) -> dict[str, Any]:
    """A seeded ``SentimentClassifier``: eval-mode logits of the batch, of the batch with ``extra_pad``
    more PAD columns, of each row alone (cut to its length); then, in train mode, the gradient of
    ``logits.sum()`` on every parameter. With ``num_classes=None`` the module is built with its defaults
    (``num_classes=2, dropout=0.5, pad_idx=0``).

    What it trusts: the logits and gradients are the module's outputs; the grader compares them with
    each other and checks shapes and finiteness.
    """
    result: dict[str, Any] = {"error": None}
    with observe_errors(result, "error", impl):
        _manual_seed(seed)
        if num_classes is None:
            model = impl.SentimentClassifier(vocab_size, embed_dim, hidden_dim)
        else:
            model = impl.SentimentClassifier(vocab_size, embed_dim, hidden_dim, num_classes=num_classes, dropout=0.5,
                                             pad_idx=0)
        pad_idx = 0
        model.eval()
        with _NO_GRAD():
            result["logits"] = model(tokens, lengths)
            wider = _cat([tokens, torch.full((len(tokens), extra_pad), pad_idx, dtype=tokens.dtype)], dim=1)
            result["logits_padded"] = model(wider, lengths)
            result["logits_rows"] = [model(tokens[b:b + 1, :int(lengths[b])], lengths[b:b + 1])
                                     for b in range(len(tokens))]
        model.train()
        model.zero_grad()
        model(tokens, lengths).sum().backward()
        result["grads"] = {name: (None if p.grad is None else p.grad.detach().clone())
                           for name, p in model.named_parameters()}
        result["embedding_pad_rows"] = [name for name, p in model.named_parameters()
                                        if p.dim() == 2 and p.shape[0] == vocab_size]
    return result


@probe
def sentiment_fit(impl: ModuleType, texts: list[str], labels: list[int], eval_texts: list[str], epochs: int,
                  seed: int, singles: int = 0, special_texts: list[str] | None = None) -> dict[str, Any]:
    """``train_sentiment`` on the training texts, then ``model.train()`` (the contract says predict
    must call eval itself) and ``predict_sentiment`` on the evaluation texts twice; the first
    ``singles`` evaluation texts also one at a time, and ``special_texts`` (empty, unknown words) on
    their own. The evaluation labels never come here.

    What it trusts: nothing but the predictions, which the grader scores and compares.
    """
    result: dict[str, Any] = {"error": None}
    with observe_errors(result, "error", impl):
        model, vocab = impl.train_sentiment(list(texts), list(labels), epochs=epochs, seed=seed)
        result["vocab_type"] = type(vocab).__name__
        model.train()
        result["predictions"] = plain(impl.predict_sentiment(model, vocab, list(eval_texts)))
        model.train()
        result["predictions_again"] = plain(impl.predict_sentiment(model, vocab, list(eval_texts)))
        result["singles"] = [plain(impl.predict_sentiment(model, vocab, [t])) for t in eval_texts[:singles]]
    if special_texts and result["error"] is None:
        with observe_errors(result, "special_error", impl):
            result["special"] = plain(impl.predict_sentiment(model, vocab, list(special_texts)))
            result["empty_list"] = plain(impl.predict_sentiment(model, vocab, []))
    return result


# -- T12.3 GAN ------------------------------------------------------------------------------------------------
class _Mlp(nn.Module):
    """The replay modules: Linear -> Tanh -> Linear, the same arrangement the grader replays."""

    def __init__(self, d_in: int, hidden: int, d_out: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d_in, hidden), nn.Linear(hidden, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.fc1(x)))


class _WatchedSGD(_SGD):
    """Plain SGD that records, at each ``step()``, how much the gradients on the *other* module's
    parameters changed since that module's own last ``step()`` (the D step must leave G's gradients
    as the last G step left them: detached fakes). Observations for hints."""

    def __init__(self, params: Any, lr: float, other: nn.Module, log: list[dict[str, Any]],
                 last: dict[int, torch.Tensor]) -> None:
        super().__init__(params, lr=lr)
        self._other, self._log, self._last = other, log, last

    def step(self, closure: Any = None) -> Any:
        changed = 0.0
        for p in self._other.parameters():
            now = p.grad.detach() if p.grad is not None else torch.zeros_like(p)
            changed += float((now - self._last.get(id(p), torch.zeros_like(p))).abs().sum())
        out = super().step(closure)
        for group in self.param_groups:
            for p in group["params"]:
                self._last[id(p)] = p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
        self._log.append({"other_grad": changed})
        return out


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@probe
def gan_replay(impl: ModuleType, g_state: dict[str, torch.Tensor], d_state: dict[str, torch.Tensor], latent_dim: int,
               hidden: int, reals: list[torch.Tensor], lr_g: float, lr_d: float, seed: int,
               use_generator: bool = True) -> dict[str, Any]:
    """``gan_step`` with this file's float64 modules and SGD optimizers, once per batch in ``reals``,
    with one ``torch.Generator`` seeded ``seed`` (or, when not ``use_generator``, ``generator=None``
    after ``torch.manual_seed(seed)``). Returns the losses and both modules' states after every step,
    and what the optimizers saw at each ``step()``: ``opt_D`` the gradient left on G, ``opt_G`` the one
    on D.

    What it trusts: the grader replays every step in float64 from the states it sent and compares the
    states returned here. One mistake leaves no trace in the states (fakes not detached, but the graph
    kept with ``retain_graph=True``: ``opt_G.zero_grad()`` then clears what leaked into G), so the
    record of G's gradients at ``opt_D.step()`` also fails a submission. It is an observation made next
    to student code: forging it could only make a submission look like a correct one, and never changes
    a state the replay checks.
    """
    result: dict[str, Any] = {"error": None, "losses": [], "g_states": [], "d_states": [], "d_log": [], "g_log": []}
    G = _Mlp(latent_dim, hidden, reals[0].shape[1]).double()
    D = _Mlp(reals[0].shape[1], hidden, 1).double()
    G.load_state_dict(g_state)
    D.load_state_dict(d_state)
    last: dict[int, torch.Tensor] = {}
    opt_G = _WatchedSGD(G.parameters(), lr_g, D, result["g_log"], last)
    opt_D = _WatchedSGD(D.parameters(), lr_d, G, result["d_log"], last)
    generator = torch.Generator().manual_seed(seed) if use_generator else None
    if not use_generator:
        _manual_seed(seed)
    with observe_errors(result, "error", impl):
        for real in reals:
            result["losses"].append(plain(impl.gan_step(G, D, real, opt_G, opt_D, latent_dim, generator=generator)))
            result["g_states"].append(_state(G))
            result["d_states"].append(_state(D))
    return result


@probe
def gan_modules(impl: ModuleType, latent_dim: int, hidden: int, out_dim: int, z: torch.Tensor, x: torch.Tensor,
                far: torch.Tensor, seed: int) -> dict[str, Any]:
    """The submission's ``Generator(latent_dim, hidden, out_dim)`` and ``Discriminator(out_dim,
    hidden)``, seeded, in train mode: outputs on ``z`` and ``x``, on their first rows alone (batch 1),
    and the discriminator's outputs on ``far`` (inputs far apart, to tell logits from probabilities).
    """
    result: dict[str, Any] = {"error": None}
    with observe_errors(result, "error", impl):
        _manual_seed(seed)
        G = impl.Generator(latent_dim=latent_dim, hidden=hidden, out_dim=out_dim).train()
        D = impl.Discriminator(in_dim=out_dim, hidden=hidden).train()
        with _NO_GRAD():
            result["g_out"] = G(z)
            result["d_out"] = D(x)
            result["g_one"] = G(z[:1])
            result["d_one"] = D(x[:1])
            result["d_far"] = D(far)
        result["g_params"] = sum(p.numel() for p in G.parameters())
        result["d_params"] = sum(p.numel() for p in D.parameters())
    return result


@probe
def gan_fit(impl: ModuleType, steps: int, batch: int, lr: float, final_lr_factor: float, mean: float, std: float,
            seed: int, z: torch.Tensor) -> dict[str, Any]:
    """Train the submission's default ``Generator()`` and ``Discriminator()`` with ``gan_step`` and
    this file's Adam (``betas=(0.5, 0.999)``) for ``steps`` steps on real batches from
    N(``mean``, ``std``²) (seeded; the target is no secret), then ``G(z)`` in eval mode on the noise
    the grader sent. The grader measures the samples' mean and spread itself.

    Both learning rates fall linearly from ``lr`` to ``lr * final_lr_factor`` over the run: a GAN
    circles around its equilibrium, and a smaller step at the end damps the circling, so that where
    the run stops matters less (the thresholds hold for other reasonable architectures too).
    """
    result: dict[str, Any] = {"error": None}
    with observe_errors(result, "error", impl):
        _manual_seed(seed)
        G, D = impl.Generator(), impl.Discriminator()
        opt_G = _ADAM(G.parameters(), lr=lr, betas=(0.5, 0.999))
        opt_D = _ADAM(D.parameters(), lr=lr, betas=(0.5, 0.999))
        g = torch.Generator().manual_seed(seed + 1)
        losses = []
        for step in range(steps):
            for opt in (opt_G, opt_D):
                for group in opt.param_groups:
                    group["lr"] = lr * (1 - (1 - final_lr_factor) * step / max(steps - 1, 1))
            real = mean + std * _randn(batch, 1, generator=g)
            losses.append(plain(impl.gan_step(G, D, real, opt_G, opt_D, z.shape[1], generator=g)))
        result["losses"] = losses[:: max(1, steps // 50)]
        G.eval()
        with _NO_GRAD():
            result["samples"] = G(z).detach()
    return result


# -- T12.4 detection --------------------------------------------------------------------------------------------
@probe
def repeat_box_iou(impl: ModuleType, layout: list[list[Any]], project_seed: int) -> dict[str, Any]:
    """``box_iou`` once per repetition on boxes made from the zygote's normal inputs: corners
    ``10 * r[:, :2]`` and sizes ``1 + 3 * |r[:, 2:]|``. Used by the speed test (see ``repeat_generated``
    in ``probes/common.py``)."""
    inputs_of = arena().inputs
    projected = _Projections(project_seed)
    for entry in layout:
        ra, rb = inputs_of(entry)
        a = _cat([10 * ra[:, :2], 10 * ra[:, :2] + 1 + 3 * _abs(ra[:, 2:])], dim=1)
        b = _cat([10 * rb[:, :2], 10 * rb[:, :2] + 1 + 3 * _abs(rb[:, 2:])], dim=1)
        refused = projected.add(impl.box_iou(a, b))
        if refused is not None:
            return refused
    return projected.result()
