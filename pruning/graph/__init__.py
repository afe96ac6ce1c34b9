"""Channel groups: which neurons of a program are cut together, and which are frozen.

groups.py        the vocabulary: ChannelGroup, its producers, consumers (Tap), the
                 tensors and arguments that shrink with it; GraphAnalysis; Plan
walk.py          `analyse`: one pass over the graph, each node to its op's handler
tracking.py      channel maps (which dim, which runs of which group) and union-find
registry.py      what a handler is, the table each op family fills, argument helpers
layers.py        Linear / Conv produce and consume groups; norms, depthwise follow them
passthrough.py   activations, dropout, pooling, reductions over other dims
reshape.py       permute, transpose, flatten, view, slice: the channel dim moves
coupling.py      residual add, gate (x * s), cat along tokens: groups cut alike
concat.py        cat and split along the channels: groups at offsets
shuffle.py       channel shuffles: a permutation of positions (interleaved runs)
divide.py        a group divided where a split's edge falls inside its channels
rms_norm.py      RMSNorm over the channels: its weight sliced, its mean's divisor kept
tensor_paths.py  parameters and buffers by attribute path
"""

from pruning.graph.groups import (
    OUTPUT_SIZES,
    ArgFix,
    ChannelGroup,
    Consumer,
    GraphAnalysis,
    InputSpec,
    ParamSlice,
    Plan,
    Span,
    Tap,
)
from pruning.graph.tensor_paths import get_tensor, owner_of
from pruning.graph.walk import analyse

__all__ = [
    "OUTPUT_SIZES",
    "ArgFix",
    "ChannelGroup",
    "Consumer",
    "GraphAnalysis",
    "InputSpec",
    "ParamSlice",
    "Plan",
    "Span",
    "Tap",
    "analyse",
    "get_tensor",
    "owner_of",
]
