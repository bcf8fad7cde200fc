"""BatchNorm folded into the layer before it, for inference.

In eval mode a BatchNorm layer is an affine map per channel, :math:`y = \\gamma (z - \\mu) /
\\sqrt{\\sigma^2 + \\epsilon} + \\beta`; when it directly follows a convolution or linear layer
:math:`z = W x + b`, the two are one layer with :math:`W' = s W` and :math:`b' = s (b - \\mu) + \\beta`,
:math:`s = \\gamma / \\sqrt{\\sigma^2 + \\epsilon}` (per output channel). The folded network computes the
same function (up to rounding) with one pass over each activation fewer: the prediction passes of PLOT
(paper Algorithm 1, line 6) and of evaluation. On two CPU cores conv-large and WRN-28-2 predicted in 0.92
and 0.96 of their time unfolded (``benchmarks/prediction.py``); on an H100 (bf16, channels-last) in 1.15
and 0.98 of it, so :func:`plotllp.engine.predict_proba` folds on a CPU only.

:func:`fold_batchnorm` traces the network once with ``torch.fx`` (modules it cannot trace, such as ones
with control flow on their input, are folded inside: their children are traced instead) and returns a
:class:`FoldedNetwork`, whose :meth:`~FoldedNetwork.refresh` recomputes the folded weights from the live
network's current weights and statistics (a few small tensor operations, done before each prediction
pass). Every other layer is the live network's own module, shared, not copied. The weights are folded
by ``torch.nn.utils.fusion``; ``torch.fx.experimental.optimization.fuse`` does the same but copies the
whole network and traces it again on every call.
"""

from __future__ import annotations

import copy

import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_weights, fuse_linear_bn_weights

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
#: modules not traced nor looked into: scripted modules, and wrappers whose forward does more than call
#: their child (a shallow copy of them would not be safe)
_LEFT_AS_THEY_ARE = (torch.jit.ScriptModule, nn.DataParallel, nn.parallel.DistributedDataParallel)


class FoldedNetwork:
    """An inference view of a network with its foldable BatchNorm layers folded (see the module's
    docstring). ``network`` is the module to call, in eval mode only; ``pairs`` lists the folded
    ``(layer, norm, folded)`` modules, the first two the live network's. Call :meth:`refresh` after the
    live network's weights change. Unless nothing folds (then ``network`` is the network itself), it
    holds no reference to the network's root module."""

    def __init__(self, network: nn.Module, pairs: list[tuple[nn.Module, nn.Module, nn.Module]]):
        self.network, self.pairs = network, pairs

    @torch.no_grad()
    def refresh(self) -> nn.Module:
        """Recompute the folded weights from the live layers; returns :attr:`network`."""
        for layer, norm, folded in self.pairs:
            fuse = fuse_conv_bn_weights if isinstance(layer, _CONVS) else fuse_linear_bn_weights
            w, b = fuse(layer.weight, layer.bias, norm.running_mean, norm.running_var, norm.eps, norm.weight, norm.bias)
            folded.weight.data, folded.bias.data = w.detach(), b.detach()
        return self.network


def fold_batchnorm(model: nn.Module) -> FoldedNetwork:
    """A :class:`FoldedNetwork` of ``model`` (already refreshed). Where nothing can be folded (no
    BatchNorm after a convolution or linear layer, or nothing traceable), its ``network`` is ``model``.
    The model is traced in eval mode (a branch on ``self.training`` is taken as in eval mode)."""
    pairs: list = []
    was_training = model.training
    model.eval()
    try:
        network = _fold(model, pairs)
    finally:
        model.train(was_training)
    folded = FoldedNetwork(network, pairs)
    folded.refresh()
    return folded


def _fold(module: nn.Module, pairs: list) -> nn.Module:
    """``module`` with its foldable pairs folded (new modules in a traced graph), or ``module`` itself."""
    if isinstance(module, _LEFT_AS_THEY_ARE):
        return module
    try:
        graph_module = fx.symbolic_trace(module)
    except Exception:                     # not traceable as a whole: fold inside its children
        children = {name: _fold(child, pairs) for name, child in module.named_children()}
        if all(children[name] is child for name, child in module.named_children()):
            return module
        view = copy.copy(module)          # shallow: parameters and other children stay shared
        view._modules = dict(module._modules, **children)
        return view
    modules = dict(graph_module.named_modules())
    found = 0
    for node in list(graph_module.graph.nodes):
        norm = modules.get(node.target) if node.op == "call_module" else None
        if not isinstance(norm, _NORMS) or not norm.track_running_stats or norm.running_mean is None:
            continue
        prev = node.args[0] if node.args else None
        layer = modules.get(prev.target) if isinstance(prev, fx.Node) and prev.op == "call_module" else None
        if not (_foldable(layer, norm) and len(prev.users) == 1):
            continue
        folded = _with_bias(layer)
        name = f"_folded_{found}"
        graph_module.add_submodule(name, folded)
        prev.target = name
        node.replace_all_uses_with(prev)
        graph_module.graph.erase_node(node)
        pairs.append((layer, norm, folded))
        found += 1
    if not found:
        return module
    graph_module.graph.lint()
    graph_module.recompile()
    return graph_module


def _foldable(layer, norm) -> bool:
    if isinstance(layer, _CONVS):
        return _CONVS.index(type(layer)) == _NORMS.index(type(norm))
    return isinstance(layer, nn.Linear) and isinstance(norm, nn.BatchNorm1d)


def _with_bias(layer: nn.Module) -> nn.Module:
    """A copy of ``layer``'s configuration with a bias (its weights are set by ``refresh``)."""
    folded = copy.copy(layer)
    folded._parameters = dict(layer._parameters)
    folded.weight = nn.Parameter(layer.weight.detach().clone(), requires_grad=False)
    folded.bias = nn.Parameter(torch.zeros(layer.weight.shape[0], dtype=layer.weight.dtype,
                                           device=layer.weight.device), requires_grad=False)
    return folded
