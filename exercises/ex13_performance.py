"""练习 13：性能优化 / Exercise 13: performance.

把每个 ``raise NotImplementedError`` 换成你的实现。用 ``grader check ex13`` 运行公开测试。
Replace each ``raise NotImplementedError`` with your implementation. Run the public tests with
``grader check ex13`` (one task: ``grader check ex13 -k prune``).

评分程序在它自己的代码里创建模型、输入和优化器，交给你的函数，然后从外部检查效果：输出与梯度（float64
下与它自己算出的结果比较）、被替换成计数层的 Linear 被调用的顺序、剪枝后的权重与 ``state_dict`` 的键、
导出的程序保存成字节再加载后在新输入上的输出、训练一步后的参数。请严格按下面写明的约定实现。
本题使用 torch 2.14：``torch.jit.script``/``torch.jit.trace`` 已弃用（torch 建议改用 ``torch.export``），
``torch.cuda.amp`` 已由 ``torch.amp`` 取代。
The grader builds the models, inputs and optimizers in its own code, hands them to your functions and
checks the effect from outside: outputs and gradients (compared in float64 with its own computation),
the order in which Linear layers it swapped for counting ones were called, the weights and
``state_dict`` keys after pruning, the outputs of an exported program saved to bytes and loaded back,
the parameters after a training step. Follow the conventions below exactly. This exercise uses torch
2.14: ``torch.jit.script``/``torch.jit.trace`` are deprecated (torch recommends ``torch.export``), and
``torch.cuda.amp`` has been replaced by ``torch.amp``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class CheckpointedMLP(nn.Module):
    """用梯度检查点（``torch.utils.checkpoint``）分段重计算的多层感知机，以计算换激活内存。

    - 结构：``self.layers = nn.ModuleList(nn.Linear(dims[i], dims[i + 1]) for i in range(len(dims) - 1))``，
      层与层之间是 ``torch.relu``，最后一层之后没有激活。输入 ``(B, dims[0])``，输出 ``(B, dims[-1])``，
      支持 ``float64``（``model.double()``）。参数名因此是 ``layers.{i}.weight``/``layers.{i}.bias``。
    - 分段：L = ``len(dims) - 1`` 层按顺序分成 ``segments`` 段，前 ``L % segments`` 段各多一层
      （与 ``numpy.array_split`` 相同，例如 5 层分 2 段为 [0, 1, 2] 和 [3, 4]）。要求
      ``1 <= segments <= L``，否则在 ``__init__`` 中抛出 ``ValueError``。
    - 前向：当 ``use_checkpoint`` 为真、模型处于训练模式（``self.training``）且 ``torch.is_grad_enabled()``
      时，**每一段**都用 ``torch.utils.checkpoint.checkpoint(..., use_reentrant=False)`` 包起来（最后一段也要）；
      **必须显式传入** ``use_reentrant=False``：不传会有警告，而旧的重入式检查点在输入不需要梯度时不会给参数梯度。
      否则（eval 模式、``torch.no_grad()``、``use_checkpoint=False``）直接逐层计算，不做检查点。
    - 效果：梯度（对输入与每个参数）与不用检查点时完全相同；一次训练步中，每层在前向时调用一次，反向时
      各段从最后一段开始依次重算一次（每层再调用一次）。评分程序会把 ``self.layers[i]`` 换成同权重的
      计数层（有的测试中这些层还带 dropout：重算必须得到与前向相同的随机掩码，保留 ``checkpoint`` 默认的
      ``preserve_rng_state=True``），所以请通过 ``self.layers[i](x)`` 调用它们。

    An MLP that recomputes its activations by segments with gradient checkpointing
    (``torch.utils.checkpoint``), trading compute for activation memory.

    - Layout: ``self.layers = nn.ModuleList(nn.Linear(dims[i], dims[i + 1]) for i in range(len(dims) - 1))``
      with ``torch.relu`` between layers and no activation after the last. Input ``(B, dims[0])``, output
      ``(B, dims[-1])``; works in ``float64`` (``model.double()``). The parameter names are therefore
      ``layers.{i}.weight``/``layers.{i}.bias``.
    - Segments: the L = ``len(dims) - 1`` layers, in order, in ``segments`` segments, the first
      ``L % segments`` of them one layer longer (as ``numpy.array_split``: 5 layers in 2 segments are
      [0, 1, 2] and [3, 4]). Requires ``1 <= segments <= L``, else ``ValueError`` in ``__init__``.
    - Forward: when ``use_checkpoint`` is true, the model is in training mode (``self.training``) and
      ``torch.is_grad_enabled()``, wrap **every segment** (the last one too) in
      ``torch.utils.checkpoint.checkpoint(..., use_reentrant=False)``; **pass** ``use_reentrant=False``
      **explicitly**: without it torch warns, and the old reentrant checkpoint gives the parameters no
      gradient when the input does not require grad. Otherwise (eval mode, ``torch.no_grad()``,
      ``use_checkpoint=False``) compute layer by layer with no checkpointing.
    - Effect: gradients (w.r.t. the input and every parameter) equal those without checkpointing; in one
      training step each layer runs once in the forward pass, then during backward the segments are
      recomputed once each, last segment first. The grader swaps ``self.layers[i]`` for counting layers
      with the same weights (in some tests they also apply dropout: a recomputation must draw the same random
      mask as the forward pass, so keep ``checkpoint``'s default ``preserve_rng_state=True``), so call them
      as ``self.layers[i](x)``.
    """

    def __init__(self, dims: Sequence[int], use_checkpoint: bool = True, segments: int = 2) -> None:
        super().__init__()
        raise NotImplementedError("TODO: CheckpointedMLP.__init__")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("TODO: CheckpointedMLP.forward")


def quantize_dynamic_linear(model: nn.Module) -> nn.Module:
    """返回 ``model`` 的 int8 **动态量化**副本：其中的 ``nn.Linear`` 变成
    ``torch.ao.nn.quantized.dynamic.Linear``，其他层（如卷积）不变。

    - **不要修改原模型**：先 ``copy.deepcopy(model)``，对副本调用 ``.eval()``，再
      ``torch.ao.quantization.quantize_dynamic(副本, {nn.Linear}, dtype=torch.qint8)``。调用之后原模型的
      Linear 层仍是浮点层，输出不变。
    - 返回的模型处在 eval 模式（Dropout 不再随机），接受与原模型相同的 float32 输入，只用于推理。
    - 用动态量化，不要用静态量化（``prepare``/``convert``）：没有 ``QuantStub``/``DeQuantStub`` 时，
      静态量化的层会收到浮点输入而报错。（``torch.ao.quantization`` 在 torch 2.14 中会发出弃用警告，
      可以用 ``warnings.catch_warnings()`` 忽略。）
    - 评分程序把返回模型的输出与它自己在同样权重上做的 int8 动态量化比较，并在保留的手写数字上比较准确率。

    Return an int8 **dynamically quantized** copy of ``model``: its ``nn.Linear`` layers become
    ``torch.ao.nn.quantized.dynamic.Linear``; other layers (convolutions, say) stay as they are.

    - **Do not modify the original**: ``copy.deepcopy(model)`` first, call ``.eval()`` on the copy, then
      ``torch.ao.quantization.quantize_dynamic(copy, {nn.Linear}, dtype=torch.qint8)``. After the call the
      original's Linear layers are still float and its outputs unchanged.
    - The returned model is in eval mode (no random Dropout), takes the same float32 inputs as the
      original, and is for inference only.
    - Use dynamic quantization, not static quantization (``prepare``/``convert``): without
      ``QuantStub``/``DeQuantStub`` statically quantized layers receive float inputs and fail.
      (``torch.ao.quantization`` warns in torch 2.14 that it is deprecated; you may silence it with
      ``warnings.catch_warnings()``.)
    - The grader compares the returned model's outputs with its own int8 dynamic quantization of the same
      weights, and its accuracy on held-out digits.
    """
    raise NotImplementedError("TODO: quantize_dynamic_linear")


def state_dict_nbytes(model: nn.Module) -> int:
    """模型大小：``torch.save(model.state_dict(), buffer)`` 写入 ``buffer = io.BytesIO()`` 的字节数（Python ``int``）。
    int8 量化后的模型应明显更小（64-128-10 的 MLP 约小 3 倍）。

    The model's size: the number of bytes ``torch.save(model.state_dict(), buffer)`` writes into
    ``buffer = io.BytesIO()`` (a Python ``int``). An int8 quantized model is clearly smaller (about 3x for a
    64-128-10 MLP).
    """
    raise NotImplementedError("TODO: state_dict_nbytes")


def global_prune(model: nn.Module, amount: float,
                 module_types: tuple[type, ...] = (nn.Linear, nn.Conv2d)) -> float:
    """对 ``model`` 中所有类型属于 ``module_types`` 的层的 ``weight`` 做**全局** L1 非结构化剪枝，返回剪枝后的总体稀疏度。

    - 用 ``torch.nn.utils.prune.global_unstructured(参数列表, pruning_method=prune.L1Unstructured, amount=amount)``，
      参数列表是 ``[(m, "weight") for m in model.modules() if isinstance(m, module_types)]``：所有这些权重放在一起，
      把绝对值最小的 ``round(amount * 总数)`` 个置零；各层的稀疏度可以不同。冻结的层（``requires_grad=False``）
      也剪；偏置不剪；其他类型的层不动。``0 <= amount < 1``。
    - 剪枝后（永久化之前）``state_dict`` 中是 ``weight_orig`` 与 ``weight_mask``，``module.weight`` 是
      ``weight_orig * weight_mask``；反向传播时被剪掉的位置梯度为 0。
    - 返回值：这些层剪枝后的 ``weight`` 中 0 的个数除以元素总数（Python ``float``）。要在剪枝后的 ``weight``
      上数，不是在 ``weight_orig`` 上（它没有 0）。

    **Global** L1 unstructured pruning of the ``weight`` of every layer of ``model`` whose type is in
    ``module_types``; return the overall sparsity after pruning.

    - Use ``torch.nn.utils.prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=amount)``
      with ``params = [(m, "weight") for m in model.modules() if isinstance(m, module_types)]``: all those
      weights together, the ``round(amount * total)`` smallest in absolute value set to zero; layers may end up
      with different sparsities. Frozen layers (``requires_grad=False``) are pruned too; biases are not;
      layers of other types are left alone. ``0 <= amount < 1``.
    - After pruning (before finalising) the ``state_dict`` holds ``weight_orig`` and ``weight_mask``, and
      ``module.weight`` is ``weight_orig * weight_mask``; backward gives the pruned positions zero gradients.
    - Return the number of zeros in those layers' pruned ``weight`` divided by their total number of elements
      (a Python ``float``). Count on the pruned ``weight``, not on ``weight_orig`` (which has no zeros).
    """
    raise NotImplementedError("TODO: global_prune")


def finalize_pruning(model: nn.Module) -> None:
    """把剪枝永久化：对每个被剪枝过 ``weight`` 的层调用 ``torch.nn.utils.prune.remove(module, "weight")``。

    之后 ``state_dict`` 中每层只有 ``weight``（一个 ``nn.Parameter``，保留剪枝得到的 0）与 ``bias``，不再有
    ``weight_orig``/``weight_mask``，也不再有剪枝的 forward pre-hook；输出不变。对从未剪枝的模型什么都不做
    （不能报错）。

    Make the pruning permanent: call ``torch.nn.utils.prune.remove(module, "weight")`` on every layer whose
    ``weight`` was pruned.

    Afterwards each layer's ``state_dict`` holds only ``weight`` (an ``nn.Parameter`` that keeps the pruned
    zeros) and ``bias``, no ``weight_orig``/``weight_mask``, and no pruning forward pre-hook is left; the
    outputs are unchanged. On a model that was never pruned it does nothing (and must not raise).
    """
    raise NotImplementedError("TODO: finalize_pruning")


def export_program(model: nn.Module, example: torch.Tensor,
                   dynamic_batch: bool = True) -> torch.export.ExportedProgram:
    """用 ``torch.export.export`` 把 ``model`` 导出为 ``torch.export.ExportedProgram``，批维度（第 0 维）可变。

    - 先 ``model.eval()``：导出的是推理图（训练模式下 Dropout 会被导出进图里）。
    - ``dynamic_batch=True`` 时传入 ``dynamic_shapes=({0: torch.export.Dim("batch")},)``，导出的程序可以在
      任意批大小（1、7、64……）上运行；不声明时批大小被固定为示例的大小。
    - 批大小为 1 的示例会让导出失败（``Constraints violated (batch)``：大小 0 和 1 会被特化为常数），所以
      ``dynamic_batch=True`` 且 ``example.shape[0] < 2`` 时，先把示例扩展到批大小 2
      （``example.expand(2, *example.shape[1:])``）。``dynamic_batch=False`` 时不传 ``dynamic_shapes``。
    - 不要用 ``torch.jit.trace``/``torch.jit.script``：在 torch 2.14 中已弃用；trace 还会把示例输入走过的分支
      固定下来。评分程序用 ``torch.export.save`` 把返回的程序存成字节、再用 ``torch.export.load`` 加载，
      在它自己的输入上运行 ``program.module()(x)``。

    Export ``model`` with ``torch.export.export`` as a ``torch.export.ExportedProgram`` whose batch dim
    (dim 0) is dynamic.

    - Call ``model.eval()`` first: export the inference graph (in training mode Dropout is exported too).
    - With ``dynamic_batch=True`` pass ``dynamic_shapes=({0: torch.export.Dim("batch")},)`` so that the
      program runs on any batch size (1, 7, 64, ...); without it the batch size is fixed to the example's.
    - An example of batch 1 makes the export fail (``Constraints violated (batch)``: sizes 0 and 1 are
      specialised to constants), so with ``dynamic_batch=True`` and ``example.shape[0] < 2`` first expand
      the example to batch 2 (``example.expand(2, *example.shape[1:])``). With ``dynamic_batch=False`` pass
      no ``dynamic_shapes``.
    - Do not use ``torch.jit.trace``/``torch.jit.script``: they are deprecated in torch 2.14, and trace also
      bakes in the branch the example took. The grader saves the returned program to bytes with
      ``torch.export.save``, loads it back with ``torch.export.load`` and runs ``program.module()(x)`` on its
      own inputs.
    """
    raise NotImplementedError("TODO: export_program")


class SignBranch(nn.Module):
    """一个带数据相关分支、又能被 ``torch.export`` 导出的模块。

    - ``__init__(dim_in, dim_out)``：两个线性层 ``self.pos = nn.Linear(dim_in, dim_out)`` 与
      ``self.neg = nn.Linear(dim_in, dim_out)``（参数名 ``pos.*``、``neg.*``）。
    - ``forward(x)``：``x`` 形状 ``(B, dim_in)``；若 **整个批** 的 ``x.sum() > 0``，返回 ``self.pos(x)``，否则返回
      ``-self.neg(x)``；形状 ``(B, dim_out)``。
    - 要能被 ``export_program`` 导出并在另一个分支的输入上给出正确结果：Python 的 ``if x.sum() > 0:`` 依赖数据，
      ``torch.export`` 无法导出它（``torch.jit.trace`` 则会把示例走过的分支固定下来）。请用
      ``torch.cond(x.sum() > 0, 正分支函数, 负分支函数, (x,))``，两个分支函数都接收 ``x`` 并返回形状相同的张量。

    A module with a data-dependent branch that ``torch.export`` can export.

    - ``__init__(dim_in, dim_out)``: two linear layers ``self.pos = nn.Linear(dim_in, dim_out)`` and
      ``self.neg = nn.Linear(dim_in, dim_out)`` (parameter names ``pos.*``, ``neg.*``).
    - ``forward(x)``: ``x`` of shape ``(B, dim_in)``; if ``x.sum() > 0`` over **the whole batch**, return
      ``self.pos(x)``, else ``-self.neg(x)``; shape ``(B, dim_out)``.
    - It must export through ``export_program`` and give the right result on inputs that take the other
      branch: a Python ``if x.sum() > 0:`` depends on data and ``torch.export`` cannot export it
      (``torch.jit.trace`` would bake in the branch the example took). Use
      ``torch.cond(x.sum() > 0, pos_fn, neg_fn, (x,))``, where both functions take ``x`` and return tensors of
      the same shape.
    """

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        raise NotImplementedError("TODO: SignBranch.__init__")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("TODO: SignBranch.forward")


def autocast_train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, criterion: nn.Module,
                        optimizer: torch.optim.Optimizer, device_type: str = "cpu",
                        dtype: torch.dtype = torch.bfloat16,
                        scaler: "torch.amp.GradScaler | None" = None) -> float:
    """混合精度训练一步，返回本步损失 ``loss.item()``（Python ``float``）。

    - 顺序：``model.train()``；``optimizer.zero_grad()``；在
      ``with torch.amp.autocast(device_type=device_type, dtype=dtype):`` 中前向并计算
      ``loss = criterion(model(x), y)``；**离开 autocast 块之后**再反向与更新。
    - ``scaler is None``：``loss.backward()``、``optimizer.step()``。
      有 ``scaler``（``torch.amp.GradScaler``）：``scaler.scale(loss).backward()``、``scaler.step(optimizer)``、
      ``scaler.update()``（``enabled=False`` 的 scaler 也这样用，它会自动退化为普通的一步）。
    - autocast 只改变运算的精度（在 CPU 上 Linear 的输出是 ``bfloat16``）：参数、梯度与优化器状态保持
      ``float32``，不要 ``.half()``/``.to(dtype)`` 模型。
    - 用 ``torch.amp.autocast``，不要用已弃用、只对 CUDA 有效的 ``torch.cuda.amp.autocast``（在 CPU 上它什么都不做）。
    - 结束后参数上留着本步的梯度（不要再清零）。

    One mixed-precision training step; return the step's loss, ``loss.item()`` (a Python ``float``).

    - Order: ``model.train()``; ``optimizer.zero_grad()``; inside
      ``with torch.amp.autocast(device_type=device_type, dtype=dtype):`` the forward pass and
      ``loss = criterion(model(x), y)``; backward and the update **after leaving the autocast block**.
    - ``scaler is None``: ``loss.backward()``, ``optimizer.step()``. With a ``scaler``
      (``torch.amp.GradScaler``): ``scaler.scale(loss).backward()``, ``scaler.step(optimizer)``,
      ``scaler.update()`` (a scaler with ``enabled=False`` is used the same way and becomes a plain step).
    - autocast changes the precision of operations only (on the CPU, Linear outputs are ``bfloat16``):
      parameters, gradients and optimizer state stay ``float32``; do not ``.half()``/``.to(dtype)`` the model.
    - Use ``torch.amp.autocast``, not the deprecated, CUDA-only ``torch.cuda.amp.autocast`` (which does nothing
      on the CPU).
    - Leave the step's gradients on the parameters (do not zero them afterwards).
    """
    raise NotImplementedError("TODO: autocast_train_step")


def gradient_report(model: nn.Module) -> dict[str, float | None]:
    """每个**可训练**参数（``requires_grad=True``）的梯度 L2 范数。

    - 键：``model.named_parameters()`` 中可训练参数的名字，按它的顺序（共享的参数只出现一次，和
      ``named_parameters()`` 一样）；冻结的参数不在其中。
    - 值：``p.grad.norm().item()``（Python ``float``；梯度全为 0 时是 ``0.0``）；``p.grad is None`` 时为 ``None``。
    - 不修改梯度。

    The L2 norm of the gradient of each **trainable** parameter (``requires_grad=True``).

    - Keys: the names of the trainable parameters of ``model.named_parameters()``, in its order (a shared
      parameter appears once, as in ``named_parameters()``); frozen parameters are left out.
    - Values: ``p.grad.norm().item()`` (a Python ``float``; ``0.0`` for an all-zero gradient), or ``None``
      when ``p.grad is None``.
    - Do not change the gradients.
    """
    raise NotImplementedError("TODO: gradient_report")


def dead_parameters(model: nn.Module, loss: torch.Tensor) -> list[str]:
    """这一次反向传播中没有得到梯度的可训练参数的名字。

    - 先 ``model.zero_grad(set_to_none=True)``（清除之前留下的梯度），再 ``loss.backward()``；
      ``loss`` 是由 ``model`` 的前向计算出的标量。
    - 返回 ``p.requires_grad`` 为真且 ``p.grad is None`` 的参数名，按 ``named_parameters()`` 的顺序。
      梯度恰好为 0（张量全 0）的参数**得到了**梯度，不算；冻结的参数不算。典型的"死"参数：没有用到的分支、
      ``detach()`` 之前的层。
    - 返回前再 ``model.zero_grad(set_to_none=True)``：不要留下梯度。

    The names of the trainable parameters that got no gradient in this backward pass.

    - First ``model.zero_grad(set_to_none=True)`` (drop grads left from before), then ``loss.backward()``;
      ``loss`` is a scalar computed by ``model``'s forward pass.
    - Return the names of the parameters with ``p.requires_grad`` true and ``p.grad is None``, in
      ``named_parameters()`` order. A parameter whose gradient is exactly zero (an all-zero tensor) **did**
      get a gradient and is not listed; frozen parameters are not listed. Typical "dead" parameters: an
      unused branch, layers before a ``detach()``.
    - Call ``model.zero_grad(set_to_none=True)`` again before returning: leave no gradients behind.
    """
    raise NotImplementedError("TODO: dead_parameters")
