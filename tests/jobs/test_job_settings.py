"""Settings: defaults, environment overrides, validation, derived URLs and folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from jobs.settings import Settings, get_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("DEADWEIGHT_"):
            monkeypatch.delenv(name)
    # A relative data_dir resolves against the working directory.
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()


def test_defaults(tmp_path: Path) -> None:
    settings = Settings()
    assert settings.data_dir == Path("./deadweight-data")
    assert settings.broker_url is None and settings.database_url is None
    assert settings.api_keys is None and settings.api_key_tenants() == {}
    assert settings.max_upload_bytes == 2 * 1024**3
    assert (settings.lease_seconds, settings.max_attempts, settings.retention_days) == (60, 3, 30)
    assert settings.job_soft_time_limit == 6 * 3600
    assert settings.job_time_limit == 6 * 3600 + 300
    assert (settings.batch_size, settings.device, settings.max_thresholds) == (256, "auto", 64)

    data = tmp_path.resolve() / "deadweight-data"
    assert settings.resolved_database_url() == f"sqlite:///{data}/deadweight.db"
    assert settings.resolved_broker_url() == "filesystem://"


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DEADWEIGHT_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("DEADWEIGHT_BROKER_URL", "redis://cache:6379/1")
    monkeypatch.setenv("DEADWEIGHT_DATABASE_URL", "postgresql+psycopg://u@db/x")
    monkeypatch.setenv("DEADWEIGHT_API_KEYS", "acme=k1, beta = k2")
    monkeypatch.setenv("DEADWEIGHT_MAX_UPLOAD_BYTES", "1000")
    monkeypatch.setenv("DEADWEIGHT_LEASE_SECONDS", "30")
    monkeypatch.setenv("DEADWEIGHT_DEVICE", "cuda:1")
    settings = get_settings()
    assert settings.data_dir == tmp_path / "d"
    assert settings.resolved_broker_url() == "redis://cache:6379/1"
    assert settings.resolved_database_url() == "postgresql+psycopg://u@db/x"
    assert settings.api_key_tenants() == {"k1": "acme", "k2": "beta"}
    assert (settings.max_upload_bytes, settings.lease_seconds) == (1000, 30)
    assert settings.device == "cuda:1"


def test_get_settings_is_cached_until_cleared(monkeypatch: pytest.MonkeyPatch) -> None:
    first = get_settings()
    assert get_settings() is first
    monkeypatch.setenv("DEADWEIGHT_BATCH_SIZE", "8")
    assert get_settings().batch_size == 256
    get_settings.cache_clear()
    assert get_settings().batch_size == 8


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lease_seconds": 4}, "DEADWEIGHT_LEASE_SECONDS must be at least 5"),
        ({"max_attempts": 0}, "DEADWEIGHT_MAX_ATTEMPTS must be at least 1"),
        ({"max_upload_bytes": 0}, "DEADWEIGHT_MAX_UPLOAD_BYTES must be at least 1"),
        ({"batch_size": 0}, "DEADWEIGHT_BATCH_SIZE must be at least 1"),
        ({"job_time_limit": 100, "job_soft_time_limit": 200}, "must exceed"),
        ({"device": "tpu"}, "DEADWEIGHT_DEVICE"),
        ({"api_keys": "acme"}, "tenant=key"),
        ({"api_keys": "a=k,b=k"}, "same key twice"),
    ],
)
def test_invalid_values_are_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings.model_validate(overrides)


def test_filesystem_broker_folders(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d")
    options = settings.broker_transport_options()
    queue = tmp_path.resolve() / "d" / "broker" / "queue"
    assert options == {
        "data_folder_in": str(queue),
        "data_folder_out": str(queue),
        "processed_folder": str(tmp_path.resolve() / "d" / "broker" / "processed"),
        # Inside the data directory, not `control/` wherever the service was started.
        "control_folder": str(tmp_path.resolve() / "d" / "broker" / "control"),
        "store_processed": False,
    }
    assert queue.is_dir()


def test_redis_visibility_timeout_exceeds_the_hard_limit() -> None:
    settings = Settings(
        broker_url="redis://localhost:6379/0", job_soft_time_limit=900, job_time_limit=1000
    )
    timeout = settings.broker_transport_options()["visibility_timeout"]
    assert timeout > settings.job_time_limit


def test_ensure_dirs(tmp_path: Path) -> None:
    Settings(data_dir=tmp_path / "d").ensure_dirs()
    assert (tmp_path / "d" / "blobs").is_dir()
    assert (tmp_path / "d" / "jobs").is_dir()
