"""A corpus of hostile uploads, each of which would leave a canary file if its code ran.

Models are built from a real `torch.export.save` archive by rewriting entries; datasets
are written byte by byte. Every pickle in the corpus unpickles to `os.system("touch
<canary>")`, and every code string runs the same command if evaluated, so after feeding
the corpus to an entry point the canary folder must still be empty.

    archives.py         Canary, Hostile, archive rewriting, the valid models edited
    unsafe_models.py    models whose code would run in a naive loader
    fragile_models.py   models that once crashed or hung the reader
    unsafe_datasets.py  datasets that must be refused
"""

from tests.hostile.archives import Canary, Hostile, batch_norm_model, valid_model, zip_bytes
from tests.hostile.fragile_models import robustness_models
from tests.hostile.unsafe_datasets import hostile_datasets
from tests.hostile.unsafe_models import hostile_models, sample_inputs_with_a_canary

__all__ = [
    "Canary",
    "Hostile",
    "batch_norm_model",
    "hostile_datasets",
    "hostile_models",
    "robustness_models",
    "sample_inputs_with_a_canary",
    "valid_model",
    "zip_bytes",
]
