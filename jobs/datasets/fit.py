"""Whether a dataset's samples fit a model's input, with a message that says how to fix it."""

from __future__ import annotations

import math

from jobs.datasets.base import DatasetFileError, DatasetInfo


def check_fits_model(info: DatasetInfo, model_input_shape: list[int | None]) -> None:
    """Refuse a dataset whose per-sample shape does not match the model's input.

    Args:
        info: the dataset's description.
        model_input_shape: the model's declared input shape, batch dimension first;
            None marks a dynamic dimension.

    Raises:
        DatasetFileError: naming both shapes (a dataset that does not fit is refused like
            an unreadable one: 422 `invalid_dataset`).
    """
    expected = model_input_shape[1:]
    fits = len(model_input_shape) >= 1 and len(expected) == len(info.x_shape)
    fits = fits and all(e is None or e == s for e, s in zip(expected, info.x_shape, strict=False))
    if fits:
        return
    shown = "[" + ", ".join("?" if e is None else str(e) for e in expected) + "]"
    message = f"dataset samples have shape {info.x_shape} but the model expects {shown}"
    sized = [e for e in expected if e is not None]
    if len(sized) == len(expected) and math.prod(sized) == math.prod(info.x_shape):
        message += f": reshape x to (N, {', '.join(map(str, sized))}) before saving"
    raise DatasetFileError(message)
