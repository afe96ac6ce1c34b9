"""Settings for the whole suite.

`make test` runs two test processes on two cores, and most tests start more (servers,
workers, sandboxed engines), each with torch. With torch's default of one intra-op thread
per core, those processes ask for several times the cores there are, and their threads
spin waiting for each other: on this project's 2-core machines a sweep test then used
~40 % more CPU time than with one thread each (13.5 s against 19-21 s of user time, same
tests, alternated). One thread per process, passed on to every process a test starts, is
what the cores can serve. `OMP_NUM_THREADS=<n> make test` still chooses otherwise.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
