"""docker-compose.yml, deploy/s3.env and deploy/prometheus.yml, read as Compose reads them.

No Docker engine runs here, so these files are checked by reading: every `DEADWEIGHT_*`
variable a service gets is a real setting and the settings accept what the file gives them,
with and without the S3 option; the bucket the init container creates is the one the
services use; Prometheus scrapes the API where it listens.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobs.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DEADWEIGHT_SERVICES = ("api", "worker", "inspector")
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}; $$ is a $.
_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution (the forms docker-compose.yml uses)."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, operator, argument = match.group(1), match.group(2), match.group(3)
        value = env.get(name)
        unset = value is None or (operator is not None and operator.startswith(":") and not value)
        if operator in (":?", "?") and unset:
            raise LookupError(f"{name}: {argument}")
        if operator in (":-", "-") and unset:
            return argument or ""
        return value or ""

    return _VARIABLE.sub(substitute, text)


def env_file(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))
    return {name.strip(): value.strip() for name, value in pairs}


def compose(env: dict[str, str]) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(
        interpolate((ROOT / "docker-compose.yml").read_text(), env)
    )
    return loaded


def settings_of(service: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in [n for n in os.environ if n.startswith("DEADWEIGHT_")]:
        monkeypatch.delenv(name)
    for name, value in service["environment"].items():
        monkeypatch.setenv(name, str(value))
    return Settings()


def test_every_deadweight_variable_is_a_setting() -> None:
    config = compose({"DEADWEIGHT_API_KEYS": "team=key"})
    fields = {f"DEADWEIGHT_{name.upper()}" for name in Settings.model_fields}
    for name in DEADWEIGHT_SERVICES:
        given = {v for v in config["services"][name]["environment"] if v.startswith("DEADWEIGHT_")}
        assert given and given <= fields, (name, sorted(given - fields))


def test_without_the_s3_option_blobs_stay_on_the_volume(monkeypatch: pytest.MonkeyPatch) -> None:
    config = compose({"DEADWEIGHT_API_KEYS": "team=key"})
    for name in DEADWEIGHT_SERVICES:
        settings = settings_of(config["services"][name], monkeypatch)
        assert settings.s3_location() is None
        assert settings.log_format == "json"
    # The object store's services are optional: nothing waits on them unless enabled.
    assert config["services"]["minio"]["profiles"] == ["s3"]
    assert config["services"]["api"]["depends_on"]["minio-bucket"]["required"] is False


def test_the_s3_env_file_points_every_service_at_the_bucket_it_creates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = env_file(ROOT / "deploy" / "s3.env")
    assert "s3" in env["COMPOSE_PROFILES"].split(",")
    config = compose({**env, "DEADWEIGHT_API_KEYS": "team=key"})
    services = config["services"]
    bucket = services["minio-bucket"]["environment"]["BUCKET"]
    assert '"store/$BUCKET"' in services["minio-bucket"]["command"][0]
    for name in DEADWEIGHT_SERVICES:
        settings = settings_of(services[name], monkeypatch)
        location = settings.s3_location()
        assert location is not None and location.bucket == bucket
        assert settings.s3_endpoint_url == "http://minio:9000"
        assert services[name]["environment"]["AWS_ACCESS_KEY_ID"] == env["AWS_ACCESS_KEY_ID"]
    minio = services["minio"]["environment"]
    assert minio["MINIO_ROOT_USER"] == env["AWS_ACCESS_KEY_ID"]
    assert minio["MINIO_ROOT_PASSWORD"] == env["AWS_SECRET_ACCESS_KEY"]
    assert len(minio["MINIO_ROOT_PASSWORD"]) >= 8  # MinIO refuses shorter ones


def test_prometheus_scrapes_the_apis_metrics() -> None:
    config = compose({"DEADWEIGHT_API_KEYS": "team=key"})
    api = config["services"]["api"]
    port = api["command"][api["command"].index("--port") + 1]
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    (job,) = prometheus["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == [f"api:{port}"]
    mount = config["services"]["prometheus"]["volumes"][0]
    assert mount.startswith("./deploy/prometheus.yml:/etc/prometheus/prometheus.yml")


def test_the_api_refuses_to_start_without_keys() -> None:
    with pytest.raises(LookupError, match="DEADWEIGHT_API_KEYS"):
        compose({})
