"""Block expansion: residual, inception, parallel and user-defined blocks as primitive nodes.

Blocks are macros. Each expander adds the nodes of one block to the graph under predictable
names (``<block>_<part>``) and returns its output node; :data:`EXPANDERS` maps a block class to
its expander, and the compiler (:mod:`.graph`) dispatches on it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..shapes import Shape, fmt
from .blocks import BlockSpec, InceptionSpec, ParallelSpec, ResidualSpec
from .layers import (
    ActivationSpec,
    AddSpec,
    BatchNormSpec,
    ConcatSpec,
    ConvSpec,
    ConvTransposeSpec,
    DepthwiseConvSpec,
    DropPathSpec,
    MaxPoolSpec,
    MultiplySpec,
    SeparableConvSpec,
)
from .nodes import FAILED, Failed, items_of_kind

if TYPE_CHECKING:
    from .graph import Compiler

CONVS = (ConvSpec, SeparableConvSpec, DepthwiseConvSpec, ConvTransposeSpec)


class BlockExpansion:
    """The block expanders, mixed into the graph compiler (they use its ``emit``/``sequence``)."""

    def residual(self: Compiler, item: ResidualSpec, x: str, name: str, scopes: list[dict]) -> str:
        mark = len(self.graph.nodes)
        body = self.sequence(item.body, x, f"{name}_", scopes)
        if body == FAILED:
            raise Failed
        if item.drop_path:
            body = self.emit(DropPathSpec(rate=item.drop_path), f"{name}_droppath", [body], item)
        body_nodes = list(self.graph.nodes.items())[mark:]
        x_shape, y_shape = self.graph.nodes[x].shape, self.graph.nodes[body].shape
        short = item.shortcut
        if isinstance(short, list):
            shortcut = self.sequence(short, x, f"{name}_shortcut_", scopes)
            if shortcut == FAILED:
                raise Failed
        elif short == "identity" or (short == "auto" and x_shape == y_shape):
            if x_shape != y_shape:
                self.fail(
                    item,
                    f"an identity shortcut needs the body to keep the shape {fmt(x_shape)}, received {fmt(y_shape)}",
                    "use shortcut: auto or projection",
                )
            shortcut = x
        else:
            shortcut = self.projection(item, x, name, x_shape, y_shape)
        # Move the shortcut's nodes before the body's (keras.applications' order).
        if body_nodes and shortcut != x:
            nodes = list(self.graph.nodes.items())
            moved = nodes[mark + len(body_nodes) :]
            self.graph.nodes = dict(nodes[:mark] + moved + body_nodes)
        out = self.emit(AddSpec(), f"{name}_add", [shortcut, body], item)
        if item.act:
            out = self.emit(ActivationSpec(fn=item.act), f"{name}_out", [out], item)
        return out

    def projection(
        self: Compiler, item: ResidualSpec, x: str, name: str, x_shape: Shape, y_shape: Shape
    ) -> str:
        if len(x_shape) < 2 or len(x_shape) != len(y_shape):
            self.fail(
                item,
                f"cannot project a {fmt(x_shape)} shortcut onto a {fmt(y_shape)} body output",
                "give shortcut: a list of layers",
            )
        strides = tuple(math.ceil(a / b) for a, b in zip(x_shape[:-1], y_shape[:-1], strict=True))
        # The bias follows the body's last convolution of any kind (a sepconv/dwconv body too).
        convs = items_of_kind(item.body, CONVS)
        bias = (
            item.shortcut_bias
            if item.shortcut_bias is not None
            else (convs[-1].bias if convs else True)
        )
        norms = items_of_kind(item.body, BatchNormSpec)
        use_bn = item.shortcut_bn if item.shortcut_bn is not None else bool(norms)
        conv = ConvSpec(K=(1,), n_K=y_shape[-1], s=strides, bias=bias)
        out = self.emit(conv, f"{name}_shortcut", [x], item)
        if self.graph.nodes[out].shape != y_shape:
            self.fail(
                item,
                f"a 1x1 projection cannot map the {fmt(x_shape)} input onto the body's {fmt(y_shape)}",
                "make the body's output size a whole fraction of its input (use p=same)",
            )
        if use_bn:
            bn = (
                norms[-1].model_copy(update={"name": None, "src": None})
                if norms
                else BatchNormSpec()
            )
            out = self.emit(bn, f"{name}_shortcut_bn", [out], item)
        return out

    def inception(
        self: Compiler, item: InceptionSpec, x: str, name: str, scopes: list[dict]
    ) -> str:
        def conv(k: int, n: int, src: str, part: str) -> str:
            out = self.emit(
                ConvSpec(
                    K=(k,), n_K=n, p="same", act=None if item.bn else item.act, bias=not item.bn
                ),
                f"{name}_{part}",
                [src],
                item,
            )
            if item.bn:
                out = self.emit(BatchNormSpec(), f"{name}_{part}_bn", [out], item)
                if item.act:
                    out = self.emit(ActivationSpec(fn=item.act), f"{name}_{part}_act", [out], item)
            return out

        branches = []
        if item.n1x1:
            branches.append(conv(1, item.n1x1, x, "1x1"))
        r3 = conv(1, item.n3x3red, x, "3x3_reduce") if item.n3x3red else x
        branches.append(conv(3, item.n3x3, r3, "3x3"))
        r5 = conv(1, item.n5x5red, x, "5x5_reduce") if item.n5x5red else x
        branches.append(conv(5, item.n5x5, r5, "5x5"))
        pool = self.emit(MaxPoolSpec(K=(3,), s=(1,), p="same"), f"{name}_pool", [x], item)
        branches.append(conv(1, item.pool_proj, pool, "pool_proj") if item.pool_proj else pool)
        return self.emit(ConcatSpec(), f"{name}_concat", branches, item)

    def parallel(self: Compiler, item: ParallelSpec, x: str, name: str, scopes: list[dict]) -> str:
        outs = [
            self.sequence(branch, x, f"{name}_b{j + 1}_", scopes) if branch else x
            for j, branch in enumerate(item.branches)
        ]
        if FAILED in outs:
            raise Failed
        merge = {"add": AddSpec, "concat": ConcatSpec, "multiply": MultiplySpec}[item.merge]()
        out = self.emit(merge, f"{name}_{item.merge}", outs, item)
        if item.act:
            out = self.emit(ActivationSpec(fn=item.act), f"{name}_out", [out], item)
        return out

    def block_seq(self: Compiler, item: BlockSpec, x: str, name: str, scopes: list[dict]) -> str:
        body = item.body
        if len(body) == 1 and body[0].name is None and body[0].from_ is None:
            # A one-item block is that item under the block's name: bottleneck_3_conv_1,
            # not bottleneck_3_residual_1_conv_1.
            only = body[0]
            expand = EXPANDERS.get(type(only))
            if expand is None:
                return self.emit(only, f"{name}_{only.kind_name}", [x])
            return expand(self, only, x, name, scopes)
        return self.sequence(body, x, f"{name}_", scopes)


#: Block class -> its expander (called as ``expander(compiler, item, x, name, scopes)``).
EXPANDERS: dict[type, Callable[..., str]] = {
    ResidualSpec: BlockExpansion.residual,
    InceptionSpec: BlockExpansion.inception,
    ParallelSpec: BlockExpansion.parallel,
    BlockSpec: BlockExpansion.block_seq,
}
