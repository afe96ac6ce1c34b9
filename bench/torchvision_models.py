"""Real torchvision classifiers on a CPU-only torch, for the zoo acceptance run.

torchvision's wheels on PyPI are built against CUDA torch: with the CPU torch this project
pins, its C extension (`torchvision._C`, detection ops such as nms) cannot load, and
`import torchvision` then fails while registering fake kernels for those ops. Image
classifiers never call them, so the two registration modules are replaced by empty ones
before the import. Everything else, the model definitions included, is torchvision's own
code, unchanged. torchvision lives outside the project's environment (`make install`
puts it into `.venv/torchvision`, without dependencies), so nothing else in the
project, torch itself included, ever imports it.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import torch

TORCHVISION_DIR = Path(__file__).resolve().parent.parent / ".venv" / "torchvision"
_SKIPPED = ("torchvision._meta_registrations", "torchvision._autograd_registrations")

# The acceptance list of issue 3: one or two members of each family, the smallest variants,
# since the engine's work depends on the patterns, not on depth.
FAMILIES: dict[str, list[str]] = {
    "ResNet": ["resnet18", "resnet50"],
    "ResNeXt": ["resnext50_32x4d"],
    "VGG-BN": ["vgg11_bn"],
    "MobileNet V2": ["mobilenet_v2"],
    "MobileNet V3": ["mobilenet_v3_small", "mobilenet_v3_large"],
    "EfficientNet": ["efficientnet_b0"],
    "MnasNet": ["mnasnet0_5"],
    "DenseNet": ["densenet121"],
    "GoogLeNet": ["googlenet"],
    "SqueezeNet": ["squeezenet1_1"],
    "ShuffleNet": ["shufflenet_v2_x0_5"],
    "RegNet": ["regnet_x_400mf", "regnet_y_400mf"],
    "ConvNeXt": ["convnext_tiny"],
    "ViT": ["vit_b_16"],
    "Swin": ["swin_t"],
    "AlexNet": ["alexnet"],
}


def models_module() -> Any:
    """`torchvision.models`, imported from `.venv/torchvision`."""
    if not (TORCHVISION_DIR / "torchvision").is_dir():
        raise RuntimeError(f"no torchvision in {TORCHVISION_DIR}: run `make install`")
    if str(TORCHVISION_DIR) not in sys.path:
        sys.path.append(str(TORCHVISION_DIR))
    for name in _SKIPPED:
        sys.modules.setdefault(name, types.ModuleType(name))
    import torchvision.models  # type: ignore[import-not-found, unused-ignore]

    return torchvision.models


def build(name: str, image_size: int, seed: int = 0) -> torch.nn.Module:
    """The named classifier with its default head (1000 classes), randomly initialised."""
    models = models_module()
    torch.manual_seed(seed)
    kwargs: dict[str, Any] = {"weights": None}
    if name.startswith("vit_"):
        kwargs["image_size"] = image_size  # ViT's position embedding is sized for the input
    if name in ("googlenet", "inception_v3"):
        kwargs.update(aux_logits=False, init_weights=True)
    model: torch.nn.Module = getattr(models, name)(**kwargs)
    return model.eval()


def calibrate_batchnorm(model: torch.nn.Module, images: torch.Tensor, batch: int = 32) -> None:
    """Give every BatchNorm the running statistics of `images`, as training would.

    Freshly initialised BatchNorms hold mean 0 and variance 1, which makes them the identity
    in eval mode and lets activations grow without bound through deep residual stacks;
    real checkpoints do not look like that.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # a cumulative average over the batches below
    model.train()
    with torch.no_grad():
        for start in range(0, len(images), batch):
            model(images[start : start + batch])
    model.eval()
