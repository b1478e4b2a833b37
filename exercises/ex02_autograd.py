"""练习 2：自动微分 / Exercise 2: automatic differentiation.

把每个 ``raise NotImplementedError`` 换成你的实现。用 ``grader check ex02`` 运行公开测试。
本练习只用 autograd 本身：不要用 ``torch.optim``，也不要用 ``nn.Linear`` 之类的层来拟合。
Replace each ``raise NotImplementedError`` with your implementation. Run the public tests with
``grader check ex02`` (one task: ``grader check ex02 -k fit_line``). Use autograd itself here:
no ``torch.optim``, and no layers such as ``nn.Linear`` for the fitting tasks.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def minimize_scalar(f: Callable[[torch.Tensor], torch.Tensor], x0: float, lr: float = 0.1,
                    steps: int = 100) -> float:
    """用 autograd 和手写更新做梯度下降，求标量函数 ``f`` 的极小点。

    - ``x`` 从 ``x0`` 开始，是一个需要梯度的 0 维张量（建议 ``dtype=torch.float64``）。
    - 每一步：``f(x)`` 返回 0 维张量；调用 ``backward()`` 得到 ``x.grad``；然后
      ``x ← x − lr · x.grad``。更新必须在 ``torch.no_grad()`` 中**原地**进行，使 ``x`` 始终是
      同一个叶子张量；更新后把梯度清零，否则梯度会在各步之间累积。
    - 正好做 ``steps`` 步（``steps=0`` 时返回 ``x0``）。不要使用 ``torch.optim``。
    - 返回 Python ``float``（``x.item()``），不是张量。学习率过大时结果可以发散（很大、inf 或
      nan），但不能报错。

    Minimise a scalar function ``f`` by gradient descent with autograd and a hand-written update.

    - ``x`` starts at ``x0`` as a 0-dim tensor that requires grad (``dtype=torch.float64`` is
      recommended).
    - Each step: ``f(x)`` returns a 0-dim tensor; ``backward()`` fills ``x.grad``; then
      ``x ← x − lr · x.grad``. Do the update **in place** under ``torch.no_grad()`` so ``x`` stays
      the same leaf tensor, and zero the gradient afterwards, or it accumulates across steps.
    - Take exactly ``steps`` steps (``steps=0`` returns ``x0``). Do not use ``torch.optim``.
    - Return a Python ``float`` (``x.item()``), not a tensor. With too large a learning rate the
      result may diverge (huge, inf or nan), but the function must not raise.
    """
    raise NotImplementedError("TODO: minimize_scalar")


def fit_line(x: torch.Tensor, y: torch.Tensor, lr: float = 0.05, steps: int = 500) -> tuple[float, float]:
    """用叶子张量 ``w``、``b`` 和均方误差手写线性回归 ``y ≈ w·x + b``。

    - 输入：``x`` 和 ``y`` 是浮点张量，形状为 ``(N,)`` 或 ``(N, 1)``（两者可以不同）；先把它们
      都展平成 ``(N,)``，否则 ``(N, 1) − (N,)`` 会广播成 ``(N, N)``。``N`` 可以是 1。
    - ``w`` 和 ``b`` 是 0 维、``requires_grad=True`` 的**叶子**张量，初始值都为 0，dtype 与 ``x``
      相同。
    - 每一步：损失 ``mean((w·x + b − y)²)``（取 mean，不是 sum），``backward()``，在
      ``torch.no_grad()`` 中 ``w −= lr·w.grad``、``b −= lr·b.grad``，再把梯度清零。共 ``steps`` 步。
    - 不要使用 ``nn.Linear``、``nn.MSELoss`` 或 ``torch.optim``。
    - 返回两个 Python ``float`` 组成的元组 ``(w, b)``。

    Linear regression ``y ≈ w·x + b`` by hand, with leaf tensors ``w``, ``b`` and the mean squared
    error.

    - Input: float tensors ``x`` and ``y`` of shape ``(N,)`` or ``(N, 1)`` (they may differ);
      flatten both to ``(N,)`` first, or ``(N, 1) − (N,)`` broadcasts to ``(N, N)``. ``N`` may be 1.
    - ``w`` and ``b`` are 0-dim **leaf** tensors with ``requires_grad=True``, both starting at 0,
      with ``x``'s dtype.
    - Each step: loss ``mean((w·x + b − y)²)`` (the mean, not the sum), ``backward()``, then under
      ``torch.no_grad()`` ``w −= lr·w.grad`` and ``b −= lr·b.grad``, then zero the gradients.
      ``steps`` steps in all.
    - Do not use ``nn.Linear``, ``nn.MSELoss`` or ``torch.optim``.
    - Return a tuple ``(w, b)`` of two Python floats.
    """
    raise NotImplementedError("TODO: fit_line")


class SwishFn(torch.autograd.Function):
    """自定义 autograd 函数：``swish(x) = x · σ(βx)``，前向和反向都由你来写。

    - ``forward(ctx, x, beta)``：``x`` 是任意形状的浮点张量，``beta`` 是 Python ``float``。返回
      与 ``x`` 形状、dtype、设备相同的 ``x * torch.sigmoid(beta * x)``。用 ``torch.sigmoid``，
      不要手写 ``exp(x) / (1 + exp(x))``（|x| 很大时会得到 NaN）。用 ``ctx.save_for_backward``
      保存反向需要的张量，``beta`` 可以存成 ``ctx.beta``。
    - ``backward(ctx, grad_output)``：导数为 ``σ(βx) + βx·σ(βx)(1 − σ(βx))``（注意第二项的
      β）。按链式法则乘以 ``grad_output``。forward 有两个输入，所以返回两个值：
      ``(grad_x, None)``，``beta`` 不需要梯度。

    A custom autograd Function: ``swish(x) = x · σ(βx)``, with forward and backward written by you.

    - ``forward(ctx, x, beta)``: ``x`` is a float tensor of any shape, ``beta`` a Python
      ``float``. Return ``x * torch.sigmoid(beta * x)`` with ``x``'s shape, dtype and device. Use
      ``torch.sigmoid``, not a hand-written ``exp(x) / (1 + exp(x))`` (NaN for large |x|). Save
      the tensors backward needs with ``ctx.save_for_backward``; ``beta`` can go in ``ctx.beta``.
    - ``backward(ctx, grad_output)``: the derivative is ``σ(βx) + βx·σ(βx)(1 − σ(βx))`` (mind the
      β in the second term). Multiply by ``grad_output`` (chain rule). forward has two inputs, so
      return two values: ``(grad_x, None)``; ``beta`` needs no gradient.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, beta: float) -> torch.Tensor:
        raise NotImplementedError("TODO: SwishFn.forward")

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        raise NotImplementedError("TODO: SwishFn.backward")


def swish(x: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """通过 ``SwishFn.apply(x, beta)`` 计算 swish（不要直接用普通运算），结果必须留在计算图上。

    Compute swish through ``SwishFn.apply(x, beta)`` (not with plain tensor operations); the
    result must stay on the autograd graph.
    """
    raise NotImplementedError("TODO: swish")


def nth_derivative(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, n: int) -> torch.Tensor:
    """用 ``torch.autograd.grad`` 计算逐元素函数 ``f`` 在 ``x`` 处的 ``n`` 阶导数。

    - ``f`` 逐元素作用（如 ``torch.sin``、``lambda t: t ** 3``）；``x`` 是任意形状的浮点张量，
      可以不需要梯度。``n >= 0``；``n = 0`` 返回 ``f(x)``。
    - 在 ``x`` 的副本上求导（``x.detach().clone().requires_grad_()``）：不要改变调用者的 ``x``
      （数值、``requires_grad``、``.grad``）。
    - 每次对 ``y.sum()`` 求导（逐元素函数的和的梯度就是逐元素导数），并传 ``create_graph=True``，
      这样下一阶还能继续求导。用 ``torch.autograd.grad``，不要用 ``.backward()``（``.grad``
      会累积）。
    - 当导数不再依赖 ``x``（例如 ``x³`` 的 4 阶导）时返回全 0，不要报错：``y`` 不再
      ``requires_grad``，或 ``autograd.grad`` 需要 ``allow_unused=True``。
    - 返回与 ``x`` 形状、dtype 相同的张量（可以 ``detach()``）。

    The ``n``-th derivative of an element-wise function ``f`` at ``x``, with ``torch.autograd.grad``.

    - ``f`` acts element-wise (e.g. ``torch.sin``, ``lambda t: t ** 3``); ``x`` is a float tensor
      of any shape that need not require grad. ``n >= 0``; ``n = 0`` returns ``f(x)``.
    - Differentiate a copy of ``x`` (``x.detach().clone().requires_grad_()``): leave the caller's
      ``x`` unchanged (values, ``requires_grad``, ``.grad``).
    - Differentiate ``y.sum()`` each time (the gradient of a sum of element-wise terms is the
      element-wise derivative) with ``create_graph=True`` so the next order can be taken. Use
      ``torch.autograd.grad``, not ``.backward()`` (``.grad`` would accumulate).
    - When the derivative no longer depends on ``x`` (say the 4th derivative of ``x³``), return
      zeros instead of raising: ``y`` no longer requires grad, or ``autograd.grad`` needs
      ``allow_unused=True``.
    - Return a tensor with ``x``'s shape and dtype (it may be detached).
    """
    raise NotImplementedError("TODO: nth_derivative")


def input_saliency(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """输入显著性：每个样本目标类别的 logit 对输入的梯度的绝对值 ``|∂logit[i, target[i]] / ∂x[i]|``。

    - 输入：``model`` 把 ``(B, D)`` 映射为 logits ``(B, C)``；``x`` 形状 ``(B, D)``；``target``
      为 ``(B,)`` 的 int64 类别下标（每个样本一个）。
    - 在 **eval 模式**下计算（关闭 Dropout，结果确定），结束后恢复模型原来的模式
      （``was_training = model.training`` … ``model.train(was_training)``）。
    - 用 ``gather`` 取出各样本目标类别的 logit（不要把所有类别相加），求和后对 ``x`` 求导：
      整批只做一次前向和一次反向，不要逐样本循环。
    - 不要留下痕迹：用 ``torch.autograd.grad(…, x 的副本)``，不要 ``backward()``，模型参数的
      ``.grad`` 调用后仍为 ``None``；不要修改调用者的 ``x``（先
      ``x.detach().clone().requires_grad_()``）。
    - 输出：形状、dtype 与 ``x`` 相同，非负，不需要梯度（``requires_grad=False``）。

    Input saliency: the absolute gradient of each sample's target-class logit with respect to
    its input, ``|∂logit[i, target[i]] / ∂x[i]|``.

    - Input: ``model`` maps ``(B, D)`` to logits ``(B, C)``; ``x`` has shape ``(B, D)``;
      ``target`` holds ``(B,)`` int64 class indices, one per sample.
    - Compute in **eval mode** (dropout off, deterministic) and restore the model's previous
      mode afterwards (``was_training = model.training`` … ``model.train(was_training)``).
    - Pick each sample's target logit with ``gather`` (do not sum all classes), sum them and
      differentiate with respect to ``x``: one forward and one backward for the whole batch, no
      loop over samples.
    - Leave no trace: use ``torch.autograd.grad(..., copy of x)``, not ``backward()``, so every
      parameter's ``.grad`` is still ``None`` afterwards; do not modify the caller's ``x``
      (start from ``x.detach().clone().requires_grad_()``).
    - Output: ``x``'s shape and dtype, non-negative, not requiring grad.
    """
    raise NotImplementedError("TODO: input_saliency")
