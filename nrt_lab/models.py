"""Demo models: small NEFFs that really compute, each with a NumPy reference to check the results.

Four models, built with :class:`nrt_lab.neff.GraphBuilder` from fixed-seed weights and a fixed uuid, so every
build of one model gives the same bytes:

* ``add``: ``output_0 = a_input + b_input`` on float16 4×3 tensors, the addition kernel of AWS's nrtpy
  tutorials (inputs ``a_input``/``b_input``; an NKI kernel's returned tensor is named ``output_0``);
* ``mlp``: an MNIST-sized perceptron, 784→256→128→10 with relu and a softmax, batch 32;
* ``cnn``: two conv2d+relu+max_pool2d stages on 1×28×28 images, then a dense layer to 10 logits, batch 8;
* ``transformer``: one pre-norm encoder block (4-head self-attention and a gelu MLP), seq 16, d_model 64.

Usage::

    neff, ref = build_mlp()
    model = nrt_lab.Model.load(neff)
    inputs = example_inputs("mlp")
    out = model.execute(inputs)["probs"].numpy()
    np.testing.assert_allclose(out, ref(inputs)["probs"], **tolerance("float32"))

:func:`build_models` writes the four ``.neff`` files (``nrt-lab models build DIR`` does the same).
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import uuid as uuid_module
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from nrt_lab.neff import GraphBuilder, write_neff

__all__ = [
    "DEMO_MODELS",
    "DemoModel",
    "build_add",
    "build_cnn",
    "build_mlp",
    "build_models",
    "build_transformer",
    "example_inputs",
    "reference",
    "tolerance",
]

Array = np.ndarray[Any, Any]
ReferenceFn = Callable[[Mapping[str, Any]], dict[str, Array]]

SEED = 20240917
"""Seed of every demo model's weights (and the default seed of :func:`example_inputs`)."""

_UUID_NAMESPACE = uuid_module.UUID("6e72745f-6c61-6221-6465-6d6f2d6e6566")


class DemoModel(NamedTuple):
    """A built demo model: the NEFF bytes and the NumPy function computing what the NEFF computes."""

    neff: bytes
    reference: ReferenceFn


def _uuid(name: str) -> bytes:
    return uuid_module.uuid5(_UUID_NAMESPACE, f"nrt_lab.models.{name}").bytes


def _rng(name: str) -> np.random.Generator:
    salt = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")
    return np.random.default_rng([SEED, salt])


def _dense(rng: np.random.Generator, fan_in: int, fan_out: int) -> tuple[Array, Array]:
    """He-initialised float32 weights (fan_in, fan_out) and a small bias."""
    w = rng.standard_normal((fan_in, fan_out)) * math.sqrt(2.0 / fan_in)
    b = rng.standard_normal(fan_out) * 0.01
    return w.astype(np.float32), b.astype(np.float32)


def _f32(x: Any) -> Array:
    return np.asarray(x, dtype=np.float32)


def _softmax(x: Array, axis: int = -1) -> Array:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return np.asarray(e / e.sum(axis=axis, keepdims=True))


def _layernorm(x: Array, gamma: Array, beta: Array, eps: float = 1e-5) -> Array:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return np.asarray((x - mean) / np.sqrt(var + eps) * gamma + beta)


def _gelu(x: Array) -> Array:
    return np.asarray(0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3))))


def _relu(x: Array) -> Array:
    return np.maximum(x, 0.0)


def _conv2d(x: Array, w: Array, b: Array, pad: int) -> Array:
    """Cross-correlation of NCHW ``x`` with (Cout, Cin, kh, kw) ``w``, stride 1, zero padding ``pad``."""
    kh, kw = w.shape[2], w.shape[3]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    windows = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))  # N, C, Ho, Wo, kh, kw
    return np.asarray(np.einsum("nchwij,ocij->nohw", windows, w) + b.reshape(1, -1, 1, 1))


def _max_pool2(x: Array) -> Array:
    n, c, h, w = x.shape
    return np.asarray(x[:, :, : h // 2 * 2, : w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5)))


# ---------------------------------------------------------------------------------------------- add

ADD_SHAPE = (4, 3)


def _add_reference(inputs: Mapping[str, Any]) -> dict[str, Array]:
    a, b = _f32(inputs["a_input"]), _f32(inputs["b_input"])
    return {"output_0": (a + b).astype(np.float16)}


def build_add() -> DemoModel:
    """``output_0 = a_input + b_input``: elementwise sum of two float16 4×3 tensors (the nrtpy tutorial kernel)."""
    g = GraphBuilder(name="add")
    a = g.input("a_input", "float16", ADD_SHAPE)
    b = g.input("b_input", "float16", ADD_SHAPE)
    g.output("output_0", g.op("add", [a, b]))
    return DemoModel(g.build(uuid=_uuid("add")), _add_reference)


# ---------------------------------------------------------------------------------------------- mlp

MLP_BATCH = 32
MLP_SIZES = (784, 256, 128, 10)


@functools.cache
def _mlp_params() -> tuple[tuple[Array, Array], ...]:
    rng = _rng("mlp")
    return tuple(_dense(rng, i, o) for i, o in zip(MLP_SIZES[:-1], MLP_SIZES[1:], strict=True))


def _mlp_reference(inputs: Mapping[str, Any]) -> dict[str, Array]:
    (w1, b1), (w2, b2), (w3, b3) = _mlp_params()
    x = _f32(inputs["x"]).astype(np.float64)
    h = _relu(x @ w1 + b1)
    h = _relu(h @ w2 + b2)
    return {"probs": _softmax(h @ w3 + b3).astype(np.float32)}


def build_mlp() -> DemoModel:
    """``probs = softmax(relu(relu(x @ W1 + b1) @ W2 + b2) @ W3 + b3)``: x float32 (32, 784) → probs (32, 10).

    Layer 1 is an ONNX-style ``gemm``, layers 2 and 3 are ``matmul`` with a bias input; weights are constants.
    """
    g = GraphBuilder(name="mlp")
    x = g.input("x", "float32", (MLP_BATCH, MLP_SIZES[0]))
    (w1, b1), (w2, b2), (w3, b3) = _mlp_params()
    h = g.op("gemm", [x, g.constant("fc1.weight", w1), g.constant("fc1.bias", b1)], name="fc1")
    h = g.op("relu", [h], name="relu1")
    h = g.op("matmul", [h, g.constant("fc2.weight", w2), g.constant("fc2.bias", b2)], name="fc2")
    h = g.op("relu", [h], name="relu2")
    logits = g.op("matmul", [h, g.constant("fc3.weight", w3), g.constant("fc3.bias", b3)], name="fc3")
    g.output("probs", g.op("softmax", [logits], {"axis": -1}, name="softmax"))
    return DemoModel(g.build(uuid=_uuid("mlp")), _mlp_reference)


# ---------------------------------------------------------------------------------------------- cnn

CNN_BATCH = 8
CNN_IMAGE = (1, 28, 28)
CNN_CHANNELS = (8, 16)
CNN_CLASSES = 10


@functools.cache
def _cnn_params() -> dict[str, Array]:
    rng = _rng("cnn")
    c0, (c1, c2) = CNN_IMAGE[0], CNN_CHANNELS
    flat = c2 * (CNN_IMAGE[1] // 4) * (CNN_IMAGE[2] // 4)
    fc_w, fc_b = _dense(rng, flat, CNN_CLASSES)
    return {
        "conv1.weight": _f32(rng.standard_normal((c1, c0, 3, 3)) * math.sqrt(2.0 / (c0 * 9))),
        "conv1.bias": _f32(rng.standard_normal(c1) * 0.01),
        "conv2.weight": _f32(rng.standard_normal((c2, c1, 3, 3)) * math.sqrt(2.0 / (c1 * 9))),
        "conv2.bias": _f32(rng.standard_normal(c2) * 0.01),
        "fc.weight": fc_w,
        "fc.bias": fc_b,
    }


def _cnn_reference(inputs: Mapping[str, Any]) -> dict[str, Array]:
    p = {k: v.astype(np.float64) for k, v in _cnn_params().items()}
    x = _f32(inputs["image"]).astype(np.float64)
    h = _max_pool2(_relu(_conv2d(x, p["conv1.weight"], p["conv1.bias"], 1)))
    h = _max_pool2(_relu(_conv2d(h, p["conv2.weight"], p["conv2.bias"], 1)))
    logits = h.reshape(h.shape[0], -1) @ p["fc.weight"] + p["fc.bias"]
    return {"logits": logits.astype(np.float32)}


def build_cnn() -> DemoModel:
    """``logits = fc(flatten(pool(relu(conv2(pool(relu(conv1(image))))))))``: image (8, 1, 28, 28) → (8, 10).

    conv 3×3 padding 1 (1→8 then 8→16 channels), 2×2 max pooling, a ``reshape`` to (8, 784) and a ``gemm``.
    """
    g = GraphBuilder(name="cnn")
    p = _cnn_params()
    n, (c, h, w), c2 = CNN_BATCH, CNN_IMAGE, CNN_CHANNELS[1]
    x = g.input("image", "float32", (n, c, h, w))
    y = g.op("conv2d", [x, g.constant("conv1.weight", p["conv1.weight"]), g.constant("conv1.bias", p["conv1.bias"])],
             {"padding": 1}, name="conv1")
    y = g.op("relu", [y], name="relu1")
    y = g.op("max_pool2d", [y], {"kernel": 2}, name="pool1")
    y = g.op("conv2d", [y, g.constant("conv2.weight", p["conv2.weight"]), g.constant("conv2.bias", p["conv2.bias"])],
             {"padding": 1}, name="conv2")
    y = g.op("relu", [y], name="relu2")
    y = g.op("max_pool2d", [y], {"kernel": 2}, name="pool2")
    flat = c2 * (h // 4) * (w // 4)
    y = g.op("reshape", [y], {"shape": [n, flat]}, name="flatten")
    logits = g.op("gemm", [y, g.constant("fc.weight", p["fc.weight"]), g.constant("fc.bias", p["fc.bias"])], name="fc")
    g.output("logits", logits)
    return DemoModel(g.build(uuid=_uuid("cnn")), _cnn_reference)


# ---------------------------------------------------------------------------------------------- transformer

TF_BATCH, TF_SEQ, TF_DMODEL, TF_HEADS, TF_FF = 2, 16, 64, 4, 256


@functools.cache
def _transformer_params() -> dict[str, Array]:
    rng = _rng("transformer")
    d = TF_DMODEL
    params: dict[str, Array] = {}
    for name in ("q", "k", "v", "o"):
        w = rng.standard_normal((d, d)) / math.sqrt(d)
        params[f"attn.{name}.weight"] = _f32(w)
        params[f"attn.{name}.bias"] = _f32(rng.standard_normal(d) * 0.01)
    for ln in ("ln1", "ln2"):
        params[f"{ln}.gamma"] = _f32(1.0 + 0.1 * rng.standard_normal(d))
        params[f"{ln}.beta"] = _f32(0.1 * rng.standard_normal(d))
    params["ff1.weight"], params["ff1.bias"] = _dense(rng, d, TF_FF)
    params["ff2.weight"], params["ff2.bias"] = _dense(rng, TF_FF, d)
    return params


def _transformer_reference(inputs: Mapping[str, Any]) -> dict[str, Array]:
    p = {k: v.astype(np.float64) for k, v in _transformer_params().items()}
    x = _f32(inputs["x"]).astype(np.float64)
    b, s, d = x.shape
    dh = d // TF_HEADS
    h = _layernorm(x, p["ln1.gamma"], p["ln1.beta"])

    def heads(t: Array) -> Array:
        return np.asarray(t.reshape(b, s, TF_HEADS, dh).transpose(0, 2, 1, 3))

    q, k, v = (heads(h @ p[f"attn.{n}.weight"] + p[f"attn.{n}.bias"]) for n in ("q", "k", "v"))
    att = _softmax(q @ k.transpose(0, 1, 3, 2) / math.sqrt(dh))
    ctx = (att @ v).transpose(0, 2, 1, 3).reshape(b, s, d)
    h1 = x + ctx @ p["attn.o.weight"] + p["attn.o.bias"]
    ff = _gelu(_layernorm(h1, p["ln2.gamma"], p["ln2.beta"]) @ p["ff1.weight"] + p["ff1.bias"])
    y = h1 + ff @ p["ff2.weight"] + p["ff2.bias"]
    return {"y": y.astype(np.float32)}


def build_transformer() -> DemoModel:
    """One pre-norm encoder block on x float32 (2, 16, 64) → y (2, 16, 64).

    ``h1 = x + MHA(layernorm1(x))`` with 4 heads (Q/K/V projections, reshape+transpose into heads,
    ``softmax(q @ kᵀ / sqrt(16)) @ v``, heads merged back, output projection), then
    ``y = h1 + W2 gelu(W1 layernorm2(h1) + b1) + b2`` (64→256→64, tanh gelu).
    """
    g = GraphBuilder(name="transformer")
    p = _transformer_params()
    b, s, d, nh = TF_BATCH, TF_SEQ, TF_DMODEL, TF_HEADS
    dh = d // nh
    c = {name: g.constant(name, value) for name, value in p.items()}
    x = g.input("x", "float32", (b, s, d))
    h = g.op("layernorm", [x, c["ln1.gamma"], c["ln1.beta"]], name="ln1")
    proj = {}
    for n in ("q", "k", "v"):
        t = g.op("matmul", [h, c[f"attn.{n}.weight"], c[f"attn.{n}.bias"]], name=f"attn_{n}")
        t = g.op("reshape", [t], {"shape": [b, s, nh, dh]}, name=f"attn_{n}_split")
        perm = [0, 2, 3, 1] if n == "k" else [0, 2, 1, 3]  # k goes straight to (b, heads, dh, s): kᵀ
        proj[n] = g.op("transpose", [t], {"perm": perm}, name=f"attn_{n}_heads")
    scores = g.op("matmul", [proj["q"], proj["k"]], name="attn_scores")
    scale = g.constant("attn.scale", np.full((1,), 1.0 / math.sqrt(dh), dtype=np.float32))
    scores = g.op("mul", [scores, scale], name="attn_scale")
    weights = g.op("softmax", [scores], {"axis": -1}, name="attn_softmax")
    ctx = g.op("matmul", [weights, proj["v"]], name="attn_context")
    ctx = g.op("transpose", [ctx], {"perm": [0, 2, 1, 3]}, name="attn_merge")
    ctx = g.op("reshape", [ctx], {"shape": [b, s, d]}, name="attn_concat")
    attn = g.op("matmul", [ctx, c["attn.o.weight"], c["attn.o.bias"]], name="attn_out")
    h1 = g.op("add", [x, attn], name="residual1")
    h2 = g.op("layernorm", [h1, c["ln2.gamma"], c["ln2.beta"]], name="ln2")
    ff = g.op("matmul", [h2, c["ff1.weight"], c["ff1.bias"]], name="ff1")
    ff = g.op("gelu", [ff], name="ff_gelu")
    ff = g.op("matmul", [ff, c["ff2.weight"], c["ff2.bias"]], name="ff2")
    g.output("y", g.op("add", [h1, ff], name="residual2"))
    return DemoModel(g.build(uuid=_uuid("transformer")), _transformer_reference)


# ---------------------------------------------------------------------------------------------- registry

DEMO_MODELS: dict[str, Callable[[], DemoModel]] = {
    "add": build_add,
    "mlp": build_mlp,
    "cnn": build_cnn,
    "transformer": build_transformer,
}
"""Demo model name → builder, in the order :func:`build_models` writes them."""

_REFERENCES: dict[str, ReferenceFn] = {
    "add": _add_reference,
    "mlp": _mlp_reference,
    "cnn": _cnn_reference,
    "transformer": _transformer_reference,
}


def _check_name(name: str) -> None:
    if name not in DEMO_MODELS:
        raise ValueError(f"unknown demo model {name!r}; accepted: {', '.join(DEMO_MODELS)}")


def reference(name: str, inputs: Mapping[str, Any]) -> dict[str, Array]:
    """The outputs demo model ``name`` should produce for ``inputs`` (output name → array), by NumPy."""
    _check_name(name)
    return _REFERENCES[name](inputs)


def example_inputs(name: str, seed: int = SEED) -> dict[str, Array]:
    """Random inputs of the right names, dtypes and shapes for demo model ``name`` (deterministic per seed)."""
    _check_name(name)
    rng = np.random.default_rng(seed)
    if name == "add":
        return {n: rng.standard_normal(ADD_SHAPE).astype(np.float16) for n in ("a_input", "b_input")}
    if name == "mlp":
        return {"x": rng.random((MLP_BATCH, MLP_SIZES[0]), dtype=np.float32)}
    if name == "cnn":
        return {"image": rng.random((CNN_BATCH, *CNN_IMAGE), dtype=np.float32)}
    return {"x": rng.standard_normal((TF_BATCH, TF_SEQ, TF_DMODEL)).astype(np.float32)}


def tolerance(dtype: Any) -> dict[str, float]:
    """``rtol``/``atol`` for comparing an output of ``dtype`` with its reference (for assert_allclose)."""
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name in ("float16", "bfloat16"):
        return {"rtol": 1e-3, "atol": 1e-3}
    if name == "float32":
        return {"rtol": 1e-4, "atol": 1e-5}
    return {"rtol": 0.0, "atol": 0.0}


def build_models(directory: str | os.PathLike[str]) -> list[Path]:
    """Write ``add.neff``, ``mlp.neff``, ``cnn.neff`` and ``transformer.neff`` into ``directory`` (created)."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, builder in DEMO_MODELS.items():
        path = target / f"{name}.neff"
        write_neff(path, builder().neff)
        paths.append(path)
    return paths
