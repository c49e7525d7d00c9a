"""Models of the benchmark: a small 1D CNN and an MLP for MNIST-1D / vectors, ResNet-32 for
CIFAR-format images.

A recipe names one with ``"model": {"name": ..., **kwargs}``; :func:`build_model` builds it
for the data's input shape and number of classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["CNN1D", "MLP", "ResNet32", "CosineClassifier", "MODELS", "build_model"]


class CosineClassifier(nn.Module):
    """Cosine ("normalised") classifier: ``z_j = <f/‖f‖, w_j/‖w_j‖>`` in [−1, 1].

    LDAM's official code (kaidic/LDAM-DRW ``NormedLinear``) uses it with the loss scale
    s = 30; choose it in a recipe with ``"model": {..., "classifier": "cosine"}``.
    """

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, in_features).uniform_(-1, 1).renorm_(2, 0, 1e-5).mul_(1e5))

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(x, dim=1) @ F.normalize(self.weight, dim=1).t()


def _head(in_features: int, num_classes: int, classifier: str) -> nn.Module:
    if classifier == "linear":
        return nn.Linear(in_features, num_classes)
    if classifier == "cosine":
        return CosineClassifier(in_features, num_classes)
    raise ValueError(f"model option classifier must be 'linear' or 'cosine', got {classifier!r}")


class CNN1D(nn.Module):
    """Three 1D convolutions (kernel 5, stride 2, ReLU), global average pooling, a linear head.

    Input [N, L] or [N, 1, L] (MNIST-1D: L = 40). The MNIST-1D paper's CNN has the same
    shape (three stride-2 convs), which reaches ≈94% on the balanced data.
    """

    def __init__(self, num_classes: int, in_channels: int = 1, channels: int = 32, kernel_size: int = 5, classifier: str = "linear") -> None:
        super().__init__()
        pad = kernel_size // 2
        self.convs = nn.ModuleList(
            [
                nn.Conv1d(in_channels, channels, kernel_size, stride=2, padding=pad),
                nn.Conv1d(channels, channels, kernel_size, stride=2, padding=pad),
                nn.Conv1d(channels, channels, kernel_size, stride=2, padding=pad),
            ]
        )
        self.fc = _head(channels, num_classes, classifier)

    def features(self, x: Tensor) -> Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(1)
        for conv in self.convs:
            x = F.relu(conv(x))
        return x.mean(dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        logits: Tensor = self.fc(self.features(x))  # nn.Module.__call__ is untyped
        return logits


class MLP(nn.Module):
    """Fully connected ReLU network on flattened inputs (MNIST-1D paper's MLP: 2×100)."""

    def __init__(self, num_classes: int, in_features: int, hidden: Sequence[int] = (100, 100), classifier: str = "linear") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.ReLU()]
            width = int(h)
        self.body = nn.Sequential(*layers)
        self.fc = _head(width, num_classes, classifier)

    def features(self, x: Tensor) -> Tensor:
        h: Tensor = self.body(x.flatten(1))  # nn.Module.__call__ is untyped
        return h

    def forward(self, x: Tensor) -> Tensor:
        logits: Tensor = self.fc(self.features(x))  # nn.Module.__call__ is untyped
        return logits


class _BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.pad = planes - in_planes if (stride != 1 or in_planes != planes) else 0
        self.stride = stride

    def shortcut(self, x: Tensor) -> Tensor:
        # "Option A" of He et al. (2016) for CIFAR: subsample and zero-pad the channels.
        if self.pad == 0 and self.stride == 1:
            return x
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet32(nn.Module):
    """ResNet-32 for 32×32 images (He et al. 2016, CIFAR variant; 3 stages × 5 blocks, 16/32/64
    channels, option-A shortcuts), the long-tail CIFAR protocol's model (kaidic/LDAM-DRW)."""

    def __init__(self, num_classes: int, in_channels: int = 3, blocks_per_stage: int = 5, classifier: str = "linear") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        stages: list[nn.Module] = []
        in_planes = 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            for b in range(blocks_per_stage):
                stages.append(_BasicBlock(in_planes, planes, stride if b == 0 else 1))
                in_planes = planes
        self.layers = nn.Sequential(*stages)
        self.fc = _head(64, num_classes, classifier)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def features(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layers(out)
        pooled: Tensor = out.mean(dim=(2, 3))  # out is untyped: nn.Module.__call__
        return pooled

    def forward(self, x: Tensor) -> Tensor:
        logits: Tensor = self.fc(self.features(x))  # nn.Module.__call__ is untyped
        return logits


MODELS = ("cnn1d", "mlp", "resnet32")


def build_model(spec: dict[str, Any], input_shape: Sequence[int], num_classes: int) -> nn.Module:
    """Build the model ``spec["name"]`` (one of :data:`MODELS`) for inputs of ``input_shape``
    (one sample, without the batch dimension) and ``num_classes`` outputs. Every model
    takes ``classifier="linear"`` (default) or ``"cosine"`` (:class:`CosineClassifier`)."""
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    name = spec.get("name")
    try:
        if name == "cnn1d":
            in_channels = 1 if len(input_shape) == 1 else int(input_shape[0])
            return CNN1D(num_classes, in_channels=in_channels, **kwargs)
        if name == "mlp":
            in_features = 1
            for s in input_shape:
                in_features *= int(s)
            return MLP(num_classes, in_features, **kwargs)
        if name == "resnet32":
            if len(input_shape) != 3:
                raise ValueError(f"model 'resnet32' needs image inputs [C, H, W], got per-sample shape {tuple(input_shape)}; use 'cnn1d' or 'mlp'")
            return ResNet32(num_classes, in_channels=int(input_shape[0]), **kwargs)
    except TypeError as exc:
        raise ValueError(f"model {name!r}: bad option ({exc})") from exc
    raise ValueError(f"unknown model {name!r}: choose one of {MODELS}")
