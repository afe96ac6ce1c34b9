"""The safe reader: an untrusted `.pt2` upload becomes an ExportedProgram without torch's loader.

`torch.export.load` unpickles entries marked `use_pickle`, custom and opaque objects and the
sample inputs, and torch's deserializer evaluates strings of the graph JSON. So this package
reads the zip itself and hands torch only what it checked; nothing is unpickled.

    archive.py          the zip layer: allowed entry names, caps (`ArchiveLimits`), capped reads
    build.py            `read_program`: checked configs and payloads -> torch's deserializer
    payloads.py         weights and constants as raw bytes, every view checked against them
    program_check.py    the program's JSON, node by node, rebuilt from checked fields only
    program_signature.py  its inputs, outputs and module call graph
    program_fields.py   single fields: JSON shapes, dtypes, symbolic sizes, tensor metadata
    names.py            node names and parameter paths (they become Python identifiers)
    node_arguments.py   a node's arguments: plain data, tensors, symbolic sizes
    tree_specs.py       pytree specs, whose type names torch resolves
    sym_expr.py         symbolic expressions, which sympy would `eval`: a token grammar
    op_allowlist.py     the ATen operators a node may call
    program_shapes.py   the rebuilt program run once on fake tensors: declared shapes hold
    schema_objects.py   checked JSON -> torch's schema dataclasses; `warm_up` before a read

The audit table behind these checks is in docs/architecture.md ("The `.pt2` reader").
"""

from pruning.reader.archive import ArchiveLimits
from pruning.reader.build import read_program
from pruning.reader.schema_objects import warm_up

__all__ = ["ArchiveLimits", "read_program", "warm_up"]
