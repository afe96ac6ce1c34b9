"""Operator targets an uploaded program may name.

torch's deserializer resolves a node's target string by attribute lookup from `torch`,
`operator` or `math`, so the string decides which Python callable the graph will run. Only
targets of the form `torch.ops.aten.<op>.<overload>` with `<op>` below, and a few `_operator`
functions on symbolic sizes, are accepted. ATen ops that touch files or storage
(`from_file`, `set_`, ...) are deliberately absent.
"""

from __future__ import annotations

import functools
import re

import torch

ATEN_OPS: frozenset[str] = frozenset(
    """
    linear addmm mm bmm matmul t transpose permute view reshape _unsafe_view flatten unflatten
    expand expand_as squeeze unsqueeze contiguous clone alias detach lift_fresh_copy
    _to_copy to type_as
    conv1d conv2d conv3d convolution _convolution conv_transpose1d conv_transpose2d
    batch_norm _native_batch_norm_legit_no_training _native_batch_norm_legit native_batch_norm
    _native_batch_norm_legit_functional
    layer_norm native_layer_norm group_norm native_group_norm instance_norm rms_norm
    relu relu_ relu6 leaky_relu leaky_relu_ gelu silu silu_ tanh sigmoid elu elu_ selu celu
    hardswish hardswish_ hardsigmoid hardsigmoid_ hardtanh hardtanh_ mish softplus prelu
    log_sigmoid softsign threshold
    dropout dropout_ feature_dropout alpha_dropout native_dropout
    max_pool1d max_pool2d max_pool3d max_pool2d_with_indices avg_pool1d avg_pool2d avg_pool3d
    adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d _adaptive_avg_pool2d
    adaptive_max_pool1d adaptive_max_pool2d
    mean sum amax amin max min var std var_mean prod norm linalg_vector_norm any all
    add add_ sub sub_ mul mul_ div div_ neg pow sqrt rsqrt exp log abs clamp clamp_min clamp_max
    sin cos erf
    clamp_ minimum maximum reciprocal sign floor ceil round remainder fmod where
    eq ne lt le gt ge logical_not logical_and logical_or bitwise_and bitwise_or __and__ __or__
    cumsum diff
    cat stack split split_with_sizes chunk narrow slice select index index_select unbind
    split_tensor tensor_split roll flip pad constant_pad_nd
    softmax _softmax log_softmax _log_softmax scaled_dot_product_attention
    _scaled_dot_product_flash_attention_for_cpu _scaled_dot_product_efficient_attention
    embedding zeros zeros_like ones ones_like full full_like empty empty_like arange
    fill fill_ masked_fill masked_fill_ zero_
    new_zeros new_ones new_full new_empty scalar_tensor
    channel_shuffle pixel_shuffle pixel_unshuffle upsample_nearest2d upsample_bilinear2d
    _upsample_nearest_exact2d interpolate
    sym_size sym_numel sym_stride sym_storage_offset
    _assert_tensor_metadata _assert_scalar _assert_async sym_constrain_range_for_size
    sym_constrain_range
    """.split()
)

OPERATOR_FUNCTIONS: frozenset[str] = frozenset(
    "getitem add sub mul floordiv truediv mod neg pow eq ne lt le gt ge".split()
)

_ATEN_TARGET = re.compile(r"^torch\.ops\.aten\.([a-z_0-9]+)\.([A-Za-z_0-9]+)$")
_OPERATOR_TARGET = re.compile(r"^_operator\.([a-z_]+)$")


def is_allowed_target(target: str) -> bool:
    """True if a node may call `target` (a serialized operator path)."""
    m = _ATEN_TARGET.match(target)
    if m:
        op, overload = m.group(1), m.group(2)
        return (
            op in ATEN_OPS and not overload.startswith("_") and _functional_overload(op, overload)
        )
    m = _OPERATOR_TARGET.match(target)
    return m is not None and m.group(1) in OPERATOR_FUNCTIONS


@functools.cache
def _functional_overload(op: str, overload: str) -> bool:
    """The overload exists and writes to no keyword-only argument.

    `.out` variants (`relu.out`, `max.dim_max`) write into tensors passed as `out=`: torch
    never exports them, and the engine cannot run them, so they are refused on reading
    rather than failing in a job. In-place ops (`relu_`) write to `self` and stay allowed.
    """
    packet = getattr(torch.ops.aten, op, None)
    if packet is None or overload not in packet.overloads():
        return False
    schema = getattr(packet, overload)._schema
    return not any(
        arg.kwarg_only and arg.alias_info is not None and arg.alias_info.is_write
        for arg in schema.arguments
    )
