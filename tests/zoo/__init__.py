"""Small models covering the architectural patterns the channel-group engine must handle.

Each is a miniature of a well-known family (VGG, ResNet basic and bottleneck blocks,
DenseNet, MobileNetV2/V3 with squeeze-and-excitation, 1-D convnets, transformer MLPs), with
randomised BatchNorm statistics so that slicing them matters.

    convnets.py      VGG, ResNet, bottleneck, DenseNet, Inception, 1-D convnet
    mobile.py        MobileNet (depthwise, SE), ResNeXt (grouped convs), ShuffleNet
    transformers.py  transformer MLP, ConvNeXt, ViT
    attention.py     GPT, Llama (GQA, rotary), nn.MultiheadAttention, Swin window attention
    programs.py      a zoo model exported, read back and analysed as the engine does
"""

from __future__ import annotations

import torch
from torch import nn

from tests.tiny_models import randomize_bn
from tests.zoo.attention import GPT2Block, GPTBlock, LlamaBlock, MHABlock, SwinBlock
from tests.zoo.convnets import Bottleneck, Conv1dNet, DenseNetish, Inceptionish, ResNetish, VGGish
from tests.zoo.mobile import InvertedResidual, ResNeXtish, ShuffleNetish
from tests.zoo.transformers import ConvNeXtish, TransformerMLP, ViTish

ZOO: dict[str, type[nn.Module]] = {
    "vgg": VGGish,
    "resnet": ResNetish,
    "bottleneck": Bottleneck,
    "densenet": DenseNetish,
    "mobilenet": InvertedResidual,
    "conv1d": Conv1dNet,
    "transformer_mlp": TransformerMLP,
    "convnext": ConvNeXtish,
    "vit": ViTish,
    "shufflenet": ShuffleNetish,
    "inception": Inceptionish,
    "resnext": ResNeXtish,
    "gpt": GPTBlock,
    "gpt2": GPT2Block,
    "llama": LlamaBlock,
    "mha": MHABlock,
    "swin": SwinBlock,
}


def build(name: str, seed: int = 0) -> nn.Module:
    """A zoo model in eval mode with non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    model = ZOO[name]()
    randomize_bn(model, seed)
    return model.eval()


# Groups whose channels pass a LayerNorm: cutting them renormalises the others, so the
# zeroing equivalence does not hold for them (they stay prunable; outputs change).
RENORMALISED: dict[str, set[str]] = {"convnext": {"stem"}, "vit": {"patch"}}
