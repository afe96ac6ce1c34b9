"""DEADWEIGHT_BLOB_URL and the S3 settings: parsed once, a bad value refused at start with
the setting's name."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from jobs.blob_url import S3Location, parse_blob_url
from jobs.settings import Settings


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [
        ("s3://my-bucket", "my-bucket", ""),
        ("s3://my-bucket/", "my-bucket", ""),
        ("s3://my.bucket/team-a/deadweight/", "my.bucket", "team-a/deadweight"),
    ],
)
def test_an_s3_url_names_a_bucket_and_a_prefix(url: str, bucket: str, prefix: str) -> None:
    location = parse_blob_url(url)
    assert location == S3Location(bucket, prefix)
    assert location.key("blobs", "a" * 64) == "/".join(p for p in (prefix, "blobs", "a" * 64) if p)


@pytest.mark.parametrize(
    "url",
    [
        "/var/lib/deadweight",
        "file:///data",
        "https://bucket.s3.amazonaws.com/x",
        "s3://",
        "s3://Upper_Case/x",
        "s3://ab/x",
        "s3://bucket/a//b",
        "s3://bucket/a/../b",
        "s3://bucket/x?versionId=1",
    ],
)
def test_anything_else_is_refused_at_start_naming_the_setting(url: str) -> None:
    with pytest.raises(ValidationError, match="DEADWEIGHT_BLOB_URL"):
        Settings(blob_url=url)


def test_the_s3_settings_beside_it_are_checked_too() -> None:
    assert Settings().s3_location() is None  # the default: the data directory
    assert Settings(blob_url="", s3_endpoint_url="").s3_location() is None  # compose's empties
    with pytest.raises(ValidationError, match="DEADWEIGHT_S3_ENDPOINT_URL must be an http"):
        Settings(blob_url="s3://bucket", s3_endpoint_url="minio:9000")
    with pytest.raises(ValidationError, match="DEADWEIGHT_BLOB_URL is not"):
        Settings(s3_endpoint_url="http://minio:9000")  # a typo would silently use the disk
    with pytest.raises(ValidationError, match="DEADWEIGHT_S3_PRESIGN_SECONDS"):
        Settings(blob_url="s3://bucket", s3_presign_seconds=8 * 24 * 3600)
    settings = Settings(blob_url="s3://bucket/p", s3_presigned_downloads=True)
    assert (
        settings.s3_location() == S3Location("bucket", "p") and settings.s3_presign_seconds == 300
    )
