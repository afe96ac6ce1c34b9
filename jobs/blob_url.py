"""Where blobs live: `DEADWEIGHT_BLOB_URL` (`s3://bucket/prefix`) and the S3 settings beside it.

A leaf module (no boto3): the settings import it to check themselves at start, so a bad URL
is a start-up error that names the setting, not a failure at the first upload.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

BLOB_URL_SETTING: Final = "DEADWEIGHT_BLOB_URL"
ENDPOINT_SETTING: Final = "DEADWEIGHT_S3_ENDPOINT_URL"
# SigV4 presigned URLs are valid for at most seven days.
MAX_PRESIGN_SECONDS: Final = 7 * 24 * 3600

# S3's rules for bucket names (MinIO, Ceph and R2 follow them): 3 to 63 lowercase letters,
# digits, dots and hyphens, starting and ending with a letter or digit.
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# Keys are built from the prefix: no empty, `.` or `..` segment, nothing S3 would misread.
_SEGMENT_RE = re.compile(r"[A-Za-z0-9!_.*'()-]+")


@dataclass(frozen=True)
class S3Location:
    """A bucket and the key prefix (no leading or trailing slash; may be empty) under it."""

    bucket: str
    prefix: str

    def key(self, *parts: str) -> str:
        """The key of `parts` joined under the prefix."""
        return "/".join(p for p in (self.prefix, *parts) if p)


def parse_blob_url(url: str) -> S3Location:
    """`s3://bucket[/prefix]` as a location.

    Raises:
        ValueError: the URL is not of that form (the message names the setting).
    """
    parts = urlsplit(url.strip())
    if parts.scheme != "s3" or parts.query or parts.fragment:
        raise ValueError(
            f"{BLOB_URL_SETTING} must be s3://bucket/prefix (unset: the data directory), "
            f"got {url!r}"
        )
    if not _BUCKET_RE.fullmatch(parts.netloc) or ".." in parts.netloc:
        raise ValueError(
            f"{BLOB_URL_SETTING}: {parts.netloc!r} is not a bucket name (3 to 63 lowercase "
            "letters, digits, dots and hyphens)"
        )
    prefix = parts.path.strip("/")
    segments = prefix.split("/") if prefix else []
    if any(s in {".", ".."} or not _SEGMENT_RE.fullmatch(s) for s in segments):
        raise ValueError(
            f"{BLOB_URL_SETTING}: the prefix {prefix!r} must be /-separated names of letters, "
            "digits and !_.*'()- (no empty, . or .. part)"
        )
    return S3Location(bucket=parts.netloc, prefix=prefix)


def s3_problems(blob_url: str | None, endpoint_url: str | None, presign_seconds: int) -> list[str]:
    """What is wrong with the storage settings, one message each (empty: nothing)."""
    problems = []
    if blob_url:
        try:
            parse_blob_url(blob_url)
        except ValueError as exc:
            problems.append(str(exc))
    if endpoint_url:
        endpoint = urlsplit(endpoint_url)
        if endpoint.scheme not in {"http", "https"} or not endpoint.netloc:
            problems.append(f"{ENDPOINT_SETTING} must be an http(s):// URL, got {endpoint_url!r}")
        if not blob_url:
            # Most likely a typo in the other name: S3 would silently not be used.
            problems.append(f"{ENDPOINT_SETTING} is set but {BLOB_URL_SETTING} is not")
    if not 1 <= presign_seconds <= MAX_PRESIGN_SECONDS:
        problems.append(
            f"DEADWEIGHT_S3_PRESIGN_SECONDS must be 1 to {MAX_PRESIGN_SECONDS} (7 days), "
            f"got {presign_seconds}"
        )
    return problems
