"""A corpus of hostile uploads: unsafe ones, each of which would leave a canary file if its
code ran, and costly ones, which attack the validator's memory and time.

Models are built from a real `torch.export.save` archive by rewriting entries; datasets
are written byte by byte. Every pickle in the corpus unpickles to `os.system("touch
<canary>")`, and every code string runs the same command if evaluated, so after feeding
the corpus to an entry point the canary folder must still be empty.

    archives.py         Canary, Hostile, archive rewriting, the valid models edited
    unsafe_models.py    models whose code would run in a naive loader
    fragile_models.py   models that once crashed or hung the reader
    unsafe_datasets.py  datasets that must be refused
    costly_datasets.py  datasets whose validation would cost gigabytes or minutes (CORPUS)
    raw_zips.py         zips written byte by byte: deflate bombs, entries without data

Import from the modules: this package imports nothing, so `costly_datasets` and `raw_zips`
(the standard library only) load without torch, as the jobs tests and
`bench/upload_memory.py` need.
"""
