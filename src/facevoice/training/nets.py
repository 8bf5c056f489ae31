"""Encoders shared by the methods: faces, voices, and tiny debug versions for tests.

Every encoder maps a batch to raw features ``(batch, dim)`` (no L2 normalisation: the
methods decide). Built from a config dict by :func:`build_encoder`:

``{"type": "inception_resnet_v1", "dim": 512, "dropout": 0.6}``
    facenet-pytorch's ``InceptionResnetV1`` (Inception-ResNet-V1), always constructed with
    ``pretrained=None`` so nothing is ever downloaded. VGGFace2 weights are loaded only from
    the file the user names (``weights``: facenet-pytorch's ``20180402-114759-vggface2.pt``
    state dict); the classifier of the file (``logits.*``) is dropped; when ``dim`` is not
    512 the last linear layer and its batch norm start from scratch. Features are the
    output of ``last_bn`` (before facenet's L2 normalisation). Input: ``(B, 3, H, W)``,
    H and W at least 80 or so.
``{"type": "small_cnn", "dim": 128, "channels": [16, 32, 64, 96]}``
    A plain CNN (3x3 conv, BN, ReLU, 2x2 max pool per stage; global average pool; linear;
    BN) for the CPU demo profile.
``{"type": "dimnet", "dim": 512, "channels": [256, 384, 576, 864]}``
    DIMNet-style voice network over log-mel frames ``(B, bins, T)``: Conv1d (k3, s2, p1)
    + BN + ReLU per channel count, a last Conv1d (k3, s2, p1) to ``dim``, average pooling
    over time (the five-layer 1-D CNN of Wen et al.'s voice embedding network), then a batch
    norm (our choice, as facenet's ``last_bn``: both streams give features of one scale).
    Any length T >= 1 works, so whole utterances embed without cropping.
``{"type": "debug", "dim": 16}`` / ``{"type": "debug1d", "dim": 16}``
    One conv layer, a linear layer and a batch norm, for tests (like pyannote's debug models).

Images are float in [0, 1]; :func:`standardize_images` applies facenet's fixed
standardisation ``(255 x - 127.5) / 128`` before any image encoder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F


def standardize_images(x: torch.Tensor) -> torch.Tensor:
    """facenet-pytorch's fixed_image_standardization for images in [0, 1]."""
    return (x * 255.0 - 127.5) / 128.0


class InceptionResnetEncoder(nn.Module):
    """facenet-pytorch InceptionResnetV1 up to ``last_bn`` (raw features)."""

    def __init__(self, dim: int = 512, dropout: float = 0.6, weights: str | None = None):
        super().__init__()
        from facenet_pytorch import InceptionResnetV1

        net = InceptionResnetV1(pretrained=None, classify=False, dropout_prob=dropout)
        self.weights_source = "scratch"
        if weights:
            self.weights_source = load_facenet_weights(net, weights)
        if dim != 512:
            net.last_linear = nn.Linear(1792, dim, bias=False)
            net.last_bn = nn.BatchNorm1d(dim, eps=0.001, momentum=0.1, affine=True)
            self.weights_source += f" (last_linear/last_bn re-initialised for dim {dim})" if weights else ""
        self.net = net
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = n.conv2d_1a(x)
        x = n.conv2d_2a(x)
        x = n.conv2d_2b(x)
        x = n.maxpool_3a(x)
        x = n.conv2d_3b(x)
        x = n.conv2d_4a(x)
        x = n.conv2d_4b(x)
        x = n.repeat_1(x)
        x = n.mixed_6a(x)
        x = n.repeat_2(x)
        x = n.mixed_7a(x)
        x = n.repeat_3(x)
        x = n.block8(x)
        x = n.avgpool_1a(x)
        x = n.dropout(x)
        x = n.last_linear(x.flatten(1))
        return n.last_bn(x)


def load_facenet_weights(net: nn.Module, path: str) -> str:
    """Load a facenet-pytorch state dict from a local file (never a URL); return its source."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"face weights {path!r} not found: give the path of facenet-pytorch's VGGFace2 state dict "
            f"(20180402-114759-vggface2.pt) in train.face_weights, or null to train from scratch")
    state = torch.load(p, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    state = {k: v for k, v in state.items() if not k.startswith("logits.")}
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("logits.")]
    if missing or unexpected:
        raise ValueError(f"face weights {path}: not an InceptionResnetV1 state dict "
                         f"(missing {missing[:5]}, unexpected {list(unexpected)[:5]})")
    return f"vggface2:{p}"


class SmallCNN(nn.Module):
    def __init__(self, dim: int = 128, channels: list[int] | tuple[int, ...] = (16, 32, 64, 96), in_channels: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2, ceil_mode=True)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in, dim, bias=False)
        self.bn = nn.BatchNorm1d(dim)
        self.dim = dim
        self.weights_source = "scratch"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).mean((2, 3))
        return self.bn(self.fc(x))


class DIMNetVoice(nn.Module):
    def __init__(self, n_bins: int = 64, dim: int = 512, channels: list[int] | tuple[int, ...] = (256, 384, 576, 864)):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = n_bins
        for c in channels:
            layers += [nn.Conv1d(c_in, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm1d(c), nn.ReLU(inplace=True)]
            c_in = c
        layers.append(nn.Conv1d(c_in, dim, 3, stride=2, padding=1, bias=False))
        self.net = nn.Sequential(*layers)
        self.bn = nn.BatchNorm1d(dim)
        self.dim = dim
        self.weights_source = "scratch"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.net(x).mean(2))


class DebugImageNet(nn.Module):
    """Tiny image encoder for tests: conv(stride 2) + ReLU, 4x4 average pool, linear."""

    def __init__(self, dim: int = 16, width: int = 8, in_channels: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3, stride=2, padding=1)
        self.fc = nn.Linear(width * 16, dim)
        self.bn = nn.BatchNorm1d(dim)
        self.dim = dim
        self.weights_source = "scratch"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv(x))
        return self.bn(self.fc(F.adaptive_avg_pool2d(x, 4).flatten(1)))


class DebugVoiceNet(nn.Module):
    """Tiny 1-D encoder for tests: conv1d + ReLU, mean over time, linear."""

    def __init__(self, n_bins: int = 64, dim: int = 16, width: int = 16):
        super().__init__()
        self.conv = nn.Conv1d(n_bins, width, 3, stride=2, padding=1)
        self.fc = nn.Linear(width, dim)
        self.bn = nn.BatchNorm1d(dim)
        self.dim = dim
        self.weights_source = "scratch"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.fc(F.relu(self.conv(x)).mean(2)))


IMAGE_TYPES = ("inception_resnet_v1", "small_cnn", "debug")
VOICE_TYPES = ("dimnet", "debug1d")


def build_image_encoder(cfg: dict[str, Any], weights: str | None = None) -> nn.Module:
    """An image encoder (faces, or spectrograms as images for the single-stream method)."""
    kind = cfg["type"]
    dim = int(cfg["dim"])
    if kind == "inception_resnet_v1":
        return InceptionResnetEncoder(dim=dim, dropout=float(cfg.get("dropout", 0.6)), weights=weights)
    if weights:
        raise ValueError(f"face weights are for the inception_resnet_v1 encoder, not {kind!r}")
    if kind == "small_cnn":
        return SmallCNN(dim=dim, channels=list(cfg.get("channels", (16, 32, 64, 96))))
    if kind == "debug":
        return DebugImageNet(dim=dim, width=int(cfg.get("width", 8)))
    raise ValueError(f"unknown image encoder {kind!r}; known: {', '.join(IMAGE_TYPES)}")


def build_voice_encoder(cfg: dict[str, Any], n_bins: int) -> nn.Module:
    """A 1-D voice encoder over (B, bins, T) features."""
    kind = cfg["type"]
    dim = int(cfg["dim"])
    if kind == "dimnet":
        return DIMNetVoice(n_bins=n_bins, dim=dim, channels=list(cfg.get("channels", (256, 384, 576, 864))))
    if kind == "debug1d":
        return DebugVoiceNet(n_bins=n_bins, dim=dim, width=int(cfg.get("width", 16)))
    raise ValueError(f"unknown voice encoder {kind!r}; known: {', '.join(VOICE_TYPES)}")
