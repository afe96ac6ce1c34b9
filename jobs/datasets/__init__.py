"""Dataset files: format detection, structural validation and batch streaming (NumPy only).

Both the HTTP process (validates uploads, never imports torch) and the engine (streams
batches) read datasets through this package. Nothing here unpickles: `.npz` members are read
as raw `.npy` streams whose headers are checked first, `.safetensors` headers are parsed as
JSON and checked against the file before any tensor data is read, CSV is parsed as text.

Memory does not grow with the dataset: `.safetensors` is read batch by batch at random
access, `.npz` members are decompressed as a stream (one exception: a member saved in
Fortran order is read whole), CSV rows are parsed batch by batch. `.safetensors` is the
format to use for data larger than memory: no decompression and no hidden copies.

What a file declares is capped before it is acted on: zip directories (from the End Of
Central Directory record, before `zipfile` parses them), decoded array sizes, safetensors
headers (1 MiB; only x, y and string metadata), CSV lines (1 MiB) and columns (the feature
limit, before any per-column work). `validate()` reads batches of a few MB, whatever the
width of a sample, into buffers allocated once.

One module per concept: `base` (the error, formats, `DatasetInfo`, `Dataset`), `detect`,
`fit`, `open` (the entry point), and a reader per format: `npz`, `safetensors` and
`csv_format`, the first two sharing `arrays`.
"""

from jobs.datasets.base import (
    VALIDATE_BATCH_BYTES,
    ArrayBatch,
    Dataset,
    DatasetFileError,
    DatasetFormat,
    DatasetInfo,
    XBatch,
    YBatch,
)
from jobs.datasets.detect import ACCEPTED, HEAD_BYTES, detect_format
from jobs.datasets.fit import check_fits_model
from jobs.datasets.open import open_dataset
from jobs.datasets.safetensors import MAX_SAFETENSORS_HEADER

__all__ = [
    "ACCEPTED",
    "HEAD_BYTES",
    "MAX_SAFETENSORS_HEADER",
    "VALIDATE_BATCH_BYTES",
    "ArrayBatch",
    "Dataset",
    "DatasetFileError",
    "DatasetFormat",
    "DatasetInfo",
    "XBatch",
    "YBatch",
    "check_fits_model",
    "detect_format",
    "open_dataset",
]
