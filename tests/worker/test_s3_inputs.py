"""A worker on an S3 blob store (moto's server, a real process) whose inputs are not there:
a job fails saying which upload to send again, an inspection marks the model invalid, and
a store that cannot be reached fails the job with a message, never an incident."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError

from jobs.object_store import ObjectStore
from jobs.s3_blobs import S3BlobStore
from jobs.settings import Settings
from jobs.states import JobStatus, ModelStatus
from tests.s3_server import CREDENTIALS, S3Server, running_s3_server
from tests.worker.world import World
from worker.execute import BLOB_STORE_DOWN
from worker.inspection import execute_inspection


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with running_s3_server(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture
def s3_world(world: World, s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> World:
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    location = Settings(blob_url=f"s3://{s3.new_bucket()}/w").s3_location()
    assert location is not None
    world.blobs = S3BlobStore(world.blobs.root, ObjectStore(location, s3.url))
    return world


def test_a_missing_input_fails_the_job_naming_the_upload(s3_world: World, model_file: Path) -> None:
    model_id = s3_world.model(model_file)
    data_id = s3_world.npz()
    data = s3_world.store.datasets.get_any_tenant(data_id)
    assert data is not None
    s3_world.blobs.delete(data.sha256)  # lost behind the service's back

    job = s3_world.run(s3_world.job(model_id, data_id).id)
    assert job.status is JobStatus.FAILED
    assert job.error == (
        f"{data.filename}: its file is missing from the blob store; upload it again"
    )
    assert s3_world.attempt_folders() == []  # the model it had fetched went with its folder


def test_an_inspection_of_a_missing_model_marks_it_invalid(
    s3_world: World, model_file: Path
) -> None:
    model_id = s3_world.model(model_file)
    model = s3_world.store.models.get_any_tenant(model_id)
    assert model is not None
    s3_world.blobs.delete(model.sha256)
    execute_inspection(model_id, s3_world.store, s3_world.blobs, s3_world.settings)
    inspected = s3_world.store.models.get_any_tenant(model_id)
    assert inspected is not None and inspected.status is ModelStatus.INVALID
    assert inspected.error == "net.pt2: its file is missing from the blob store; upload it again"
    assert list(s3_world.blobs.tmp_dir.iterdir()) == []


def test_a_store_that_cannot_be_reached_fails_the_job_with_a_message(
    s3_world: World, model_file: Path
) -> None:
    job = s3_world.job(s3_world.model(model_file), s3_world.npz())
    location = Settings(blob_url="s3://bucket").s3_location()
    assert location is not None
    s3_world.blobs = S3BlobStore(
        s3_world.blobs.root, ObjectStore(location, "http://127.0.0.1:1")
    )  # nothing listens on port 1
    done = s3_world.run(job.id)
    assert done.status is JobStatus.FAILED and done.error == BLOB_STORE_DOWN
    assert s3_world.attempt_folders() == []


@pytest.mark.parametrize(
    "error",
    [
        # A read that keeps timing out: boto3's download retries it, then wraps it.
        ReadTimeoutError(endpoint_url="http://s3"),
        # Not retried by the download; like the above, an OSError as well as botocore's.
        ConnectTimeoutError(endpoint_url="http://s3"),
    ],
)
def test_a_store_that_times_out_fails_the_job_with_a_message(
    s3_world: World, model_file: Path, error: Exception
) -> None:
    job = s3_world.job(s3_world.model(model_file), s3_world.npz())

    def time_out(params: dict[str, object], **_: object) -> None:
        if "/blobs/" in str(params.get("url")):  # the inputs' downloads, not the manifest
            raise error

    assert isinstance(s3_world.blobs, S3BlobStore)
    events = s3_world.blobs.objects._client.meta.events
    events.register_first("before-call.s3.GetObject", time_out)
    done = s3_world.run(job.id)
    assert done.status is JobStatus.FAILED and done.error == BLOB_STORE_DOWN
    assert s3_world.attempt_folders() == []
