"""The manifest of a result set in an S3 store (`jobs.s3_blobs`): `jobs/<id>/manifest.json`.

Written last, and only if absent (the first attempt to write it wins), it is what makes a
result set visible: `{"attempt": n, "files": {name: bytes}}` names the attempt whose keys
(`jobs/<id>/attempt-<n>/<name>`) are the job's published files. The data directory's
equivalent is the sealed folder's `.manifest.json` (`jobs.manifest`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Self

MANIFEST_KEY = "manifest.json"
# A manifest lists a few dozen files; anything larger is not one.
MAX_MANIFEST_BYTES = 1024 * 1024


@dataclass(frozen=True)
class RemoteManifest:
    """What a job's manifest names: the attempt whose files are the result set."""

    attempt: int
    files: dict[str, int]

    def encode(self) -> bytes:
        return json.dumps({"attempt": self.attempt, "files": self.files}, sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Self | None:
        """The manifest in `raw`; None when it is not one."""
        try:
            data = json.loads(raw)
            attempt, files = data["attempt"], data["files"]
        except (ValueError, KeyError, TypeError):
            return None
        if not isinstance(attempt, int) or not isinstance(files, dict):
            return None
        # Names become keys and download names: plain file names, as the engine writes them.
        if not all(
            isinstance(name, str)
            and name
            and "/" not in name
            and not name.startswith(".")
            and isinstance(size, int)
            for name, size in files.items()
        ):
            return None
        return cls(attempt=attempt, files=files)
