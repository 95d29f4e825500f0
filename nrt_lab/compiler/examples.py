"""Small ONNX models that mirror real architectures, built with ``onnx.helper`` (tests, benchmark, tutorial 07).

Each builder returns an ``onnx.ModelProto`` (opset 17, seeded random weights, a dynamic ``batch`` dimension)
written the way exporters write them: ``resnet`` (Conv+BatchNorm+Relu bottleneck blocks with projection
shortcuts, MaxPool, GlobalAveragePool, Flatten, Gemm), ``mobilenet`` (depthwise-separable convolutions with
HardSwish, Clip as ReLU6), ``bert`` (an encoder layer as ``torch.onnx`` exports it: Shape/Gather/Concat for the
reshape targets, MatMul+Add projections, Transpose to heads, scaled QK^T, additive mask, Softmax, the Erf form
of GELU, LayerNormalization) and ``gpt`` (a decoder block with a causal mask: a constant lower-triangular mask
sliced to the sequence length and applied with Where).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["EXAMPLES", "bert", "gpt", "mobilenet", "resnet"]

_OPSET = 17


def _helpers() -> tuple[Any, Any, Any]:
    import onnx.helper as oh
    from onnx import TensorProto, numpy_helper

    return oh, TensorProto, numpy_helper


class _Graph:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.n = 0

    def name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}_{self.n}"

    def const(self, array: Any, prefix: str = "w") -> str:
        _, _, nph = _helpers()
        name = self.name(prefix)
        self.inits.append(nph.from_array(np.asarray(array), name))
        return name

    def weight(self, *shape: int, scale: float | None = None) -> str:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        s = scale if scale is not None else 1.0 / np.sqrt(max(fan_in, 1))
        return self.const((self.rng.standard_normal(shape) * s).astype(np.float32))

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, **attrs: Any) -> Any:
        oh, _, _ = _helpers()
        outs = [self.name(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(oh.make_node(op_type, inputs, outs, name=self.name(op_type), **attrs))
        return outs[0] if n_out == 1 else outs

    def model(self, name: str, inputs: list[Any], outputs: list[Any]) -> Any:
        oh, _, _ = _helpers()
        graph = oh.make_graph(self.nodes, name, inputs, outputs, self.inits)
        model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", _OPSET)], producer_name="nrt_lab")
        model.ir_version = 8
        return model

    # building blocks -------------------------------------------------------------------------------------
    def conv_bn(self, x: str, cin: int, cout: int, k: int, stride: int = 1, group: int = 1, act: str = "Relu") -> str:
        w = self.weight(cout, cin // group, k, k)
        y = self.op("Conv", [x, w], kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4, group=group)
        scale = self.const((1 + 0.1 * self.rng.standard_normal(cout)).astype(np.float32))
        bias = self.const((0.1 * self.rng.standard_normal(cout)).astype(np.float32))
        mean = self.const((0.1 * self.rng.standard_normal(cout)).astype(np.float32))
        var = self.const((1 + 0.1 * self.rng.random(cout)).astype(np.float32))
        y = self.op("BatchNormalization", [y, scale, bias, mean, var], epsilon=1e-5)
        if act == "Relu":
            return str(self.op("Relu", [y]))
        if act == "HardSwish":
            return str(self.op("HardSwish", [y]))
        if act == "Relu6":
            return str(self.op("Clip", [y, self.const(np.float32(0)), self.const(np.float32(6))]))
        return str(y)


def resnet(blocks: tuple[int, ...] = (1, 1, 1, 1), width: int = 16, image: int = 64, classes: int = 100,
           seed: int = 0) -> Any:
    """A ResNet-style CNN: stem, bottleneck stages (strided, with projection shortcuts), pooling, classifier."""
    oh, tp, _ = _helpers()
    g = _Graph(seed)
    x = g.conv_bn("input", 3, width, 7, stride=2)
    x = g.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = width
    for stage, count in enumerate(blocks):
        mid = width * 2 ** stage
        cout = mid * 4
        for b in range(count):
            stride = 2 if b == 0 and stage > 0 else 1
            y = g.conv_bn(x, cin, mid, 1)
            y = g.conv_bn(y, mid, mid, 3, stride=stride)
            y = g.conv_bn(y, mid, cout, 1, act="none")
            short = g.conv_bn(x, cin, cout, 1, stride=stride, act="none") if (b == 0) else x
            x = g.op("Relu", [g.op("Add", [y, short])])
            cin = cout
    x = g.op("GlobalAveragePool", [x])
    x = g.op("Flatten", [x], axis=1)
    x = g.op("Gemm", [x, g.weight(classes, cin), g.const(np.zeros(classes, np.float32))], transB=1)
    g.nodes[-1].output[0] = "logits"
    return g.model("resnet", [oh.make_tensor_value_info("input", tp.FLOAT, ["batch", 3, image, image])],
                   [oh.make_tensor_value_info("logits", tp.FLOAT, ["batch", classes])])


def mobilenet(width: int = 16, image: int = 64, classes: int = 100, seed: int = 1) -> Any:
    """A MobileNet-style CNN: depthwise-separable blocks (depthwise Conv with group=C), HardSwish, ReLU6."""
    oh, tp, _ = _helpers()
    g = _Graph(seed)
    x = g.conv_bn("input", 3, width, 3, stride=2, act="HardSwish")
    c = width
    for i, (cout, stride) in enumerate(((2 * width, 1), (4 * width, 2), (4 * width, 1), (8 * width, 2))):
        x = g.conv_bn(x, c, c, 3, stride=stride, group=c, act="Relu6" if i % 2 else "HardSwish")
        x = g.conv_bn(x, c, cout, 1, act="Relu6")
        c = cout
    x = g.op("GlobalAveragePool", [x])
    x = g.op("Reshape", [x, g.const(np.array([0, -1], np.int64))])
    x = g.op("Gemm", [x, g.weight(c, classes), g.const(np.zeros(classes, np.float32))])
    g.nodes[-1].output[0] = "logits"
    return g.model("mobilenet", [oh.make_tensor_value_info("input", tp.FLOAT, ["batch", 3, image, image])],
                   [oh.make_tensor_value_info("logits", tp.FLOAT, ["batch", classes])])


def _heads_shape(g: _Graph, x: str, heads: int, dh: int) -> str:
    """torch.onnx's dynamic reshape target [batch, seq, heads, dh] built from Shape/Gather/Unsqueeze/Concat."""
    shape = g.op("Shape", [x])
    dims = []
    for axis in (0, 1):
        d = g.op("Gather", [shape, g.const(np.array(axis, np.int64))], axis=0)
        dims.append(g.op("Unsqueeze", [d, g.const(np.array([0], np.int64))]))
    return str(g.op("Concat", dims + [g.const(np.array([heads, dh], np.int64))], axis=0))


def _attention(g: _Graph, x: str, hidden: int, heads: int, mask: str | None, causal: bool, seq: int) -> str:
    dh = hidden // heads
    target = _heads_shape(g, x, heads, dh)
    qkv = []
    for _ in range(3):
        y = g.op("Add", [g.op("MatMul", [x, g.weight(hidden, hidden)]), g.const(np.zeros(hidden, np.float32))])
        y = g.op("Reshape", [y, target])
        qkv.append(g.op("Transpose", [y], perm=[0, 2, 1, 3]))
    q, k, v = qkv
    scores = g.op("MatMul", [q, g.op("Transpose", [k], perm=[0, 1, 3, 2])])
    scores = g.op("Div", [scores, g.const(np.float32(np.sqrt(dh)))])
    if mask is not None:
        scores = g.op("Add", [scores, mask])
    if causal:
        full = g.const(np.tril(np.ones((1, 1, 1024, 1024), dtype=bool)), "causal_mask")
        shape = g.op("Shape", [x])
        length = g.op("Slice", [shape, g.const(np.array([1], np.int64)), g.const(np.array([2], np.int64))])
        zero = g.const(np.array([0, 0], np.int64))
        ends = g.op("Concat", [length, length], axis=0)
        m = g.op("Slice", [full, zero, ends, g.const(np.array([2, 3], np.int64))])
        scores = g.op("Where", [m, scores, g.const(np.float32(-np.inf))])
    probs = g.op("Softmax", [scores], axis=-1)
    ctx = g.op("Transpose", [g.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])
    ctx = g.op("Reshape", [ctx, g.const(np.array([0, 0, hidden], np.int64))])
    return str(g.op("Add", [g.op("MatMul", [ctx, g.weight(hidden, hidden)]), g.const(np.zeros(hidden, np.float32))]))


def _layer_norm(g: _Graph, x: str, hidden: int) -> str:
    return str(g.op("LayerNormalization", [x, g.const(np.ones(hidden, np.float32)),
                                           g.const(np.zeros(hidden, np.float32))], axis=-1, epsilon=1e-5))


def _gelu_erf(g: _Graph, x: str) -> str:
    y = g.op("Erf", [g.op("Div", [x, g.const(np.float32(np.sqrt(2.0)))])])
    y = g.op("Mul", [x, g.op("Add", [y, g.const(np.float32(1.0))])])
    return str(g.op("Mul", [y, g.const(np.float32(0.5))]))


def _block(g: _Graph, x: str, hidden: int, heads: int, ffn: int, mask: str | None, causal: bool, seq: int,
           pre_norm: bool) -> str:
    if pre_norm:  # GPT-2 style
        h = g.op("Add", [x, _attention(g, _layer_norm(g, x, hidden), hidden, heads, mask, causal, seq)])
        f = g.op("MatMul", [_layer_norm(g, h, hidden), g.weight(hidden, ffn)])
        f = _gelu_tanh(g, g.op("Add", [f, g.const(np.zeros(ffn, np.float32))]))
        return str(g.op("Add", [h, g.op("MatMul", [f, g.weight(ffn, hidden)])]))
    h = _layer_norm(g, g.op("Add", [x, _attention(g, x, hidden, heads, mask, causal, seq)]), hidden)
    f = _gelu_erf(g, g.op("Add", [g.op("MatMul", [h, g.weight(hidden, ffn)]), g.const(np.zeros(ffn, np.float32))]))
    f = g.op("Add", [g.op("MatMul", [f, g.weight(ffn, hidden)]), g.const(np.zeros(hidden, np.float32))])
    return _layer_norm(g, g.op("Add", [h, f]), hidden)


def _gelu_tanh(g: _Graph, x: str) -> str:
    """GPT-2's GELU as exported: 0.5*x*(1+tanh(sqrt(2/pi)*(x+0.044715*x^3)))."""
    cube = g.op("Pow", [x, g.const(np.float32(3.0))])
    inner = g.op("Add", [x, g.op("Mul", [cube, g.const(np.float32(0.044715))])])
    t = g.op("Tanh", [g.op("Mul", [inner, g.const(np.float32(np.sqrt(2 / np.pi)))])])
    return str(g.op("Mul", [g.op("Mul", [x, g.const(np.float32(0.5))]), g.op("Add", [t, g.const(np.float32(1.0))])]))


def bert(layers: int = 2, hidden: int = 64, heads: int = 4, ffn: int = 256, seq: int = 32, vocab: int = 1000,
         seed: int = 2) -> Any:
    """A BERT-style encoder: token + position embeddings (Gather), post-norm layers, additive attention mask."""
    oh, tp, _ = _helpers()
    g = _Graph(seed)
    emb = g.op("Gather", [g.weight(vocab, hidden, scale=0.1), "input_ids"], axis=0)
    pos = g.const((0.1 * g.rng.standard_normal((seq, hidden))).astype(np.float32))
    x = _layer_norm(g, g.op("Add", [emb, pos]), hidden)
    mask = g.op("Unsqueeze", [g.op("Unsqueeze", ["attention_mask", g.const(np.array([1], np.int64))]),
                              g.const(np.array([2], np.int64))])
    mask = g.op("Cast", [mask], to=tp.FLOAT)
    mask = g.op("Mul", [g.op("Sub", [g.const(np.float32(1.0)), mask]), g.const(np.float32(-10000.0))])
    for _ in range(layers):
        x = _block(g, x, hidden, heads, ffn, mask, False, seq, pre_norm=False)
    g.nodes[-1].output[0] = "last_hidden_state"
    return g.model("bert", [oh.make_tensor_value_info("input_ids", tp.INT64, ["batch", seq]),
                            oh.make_tensor_value_info("attention_mask", tp.INT64, ["batch", seq])],
                   [oh.make_tensor_value_info("last_hidden_state", tp.FLOAT, ["batch", seq, hidden])])


def gpt(layers: int = 2, hidden: int = 64, heads: int = 4, seq: int = 32, vocab: int = 1000, seed: int = 3) -> Any:
    """A GPT-style decoder: pre-norm blocks with a causal mask (sliced constant + Where), tanh GELU, LM head."""
    oh, tp, _ = _helpers()
    g = _Graph(seed)
    wte = g.weight(vocab, hidden, scale=0.1)
    x = g.op("Gather", [wte, "input_ids"], axis=0)
    x = g.op("Add", [x, g.const((0.1 * g.rng.standard_normal((seq, hidden))).astype(np.float32))])
    for _ in range(layers):
        x = _block(g, x, hidden, heads, 4 * hidden, None, True, seq, pre_norm=True)
    x = _layer_norm(g, x, hidden)
    logits = g.op("MatMul", [x, g.op("Transpose", [wte], perm=[1, 0])])
    g.nodes[-1].output[0] = "logits"
    del logits
    return g.model("gpt", [oh.make_tensor_value_info("input_ids", tp.INT64, ["batch", seq])],
                   [oh.make_tensor_value_info("logits", tp.FLOAT, ["batch", seq, vocab])])


EXAMPLES = {"resnet": resnet, "mobilenet": mobilenet, "bert": bert, "gpt": gpt}
"""Name -> builder of every example model."""
