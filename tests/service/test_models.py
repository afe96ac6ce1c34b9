"""POST/GET/DELETE /v1/models, and the streaming upload path they share with datasets."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

from fastapi.testclient import TestClient

from jobs.states import ModelStatus
from service.multipart import clean_filename
from tests.hostile.archives import zip_bytes
from tests.service.api_helpers import (
    CLOSED_BROKER,
    ClientFactory,
    blob_files,
    broker_messages,
    new_dataset,
    new_model,
    upload,
)


def test_upload_stores_a_pending_model_and_queues_its_inspection(
    client: TestClient, model_bytes: bytes
) -> None:
    body = new_model(client, model_bytes, ready=False)
    assert body["status"] == "pending"
    assert body["sha256"] == hashlib.sha256(model_bytes).hexdigest()
    assert body["bytes"] == len(model_bytes)
    assert body["filename"] == "mlp.pt2"
    assert body["created_at"].endswith("Z")
    assert [p.name for p in blob_files(client)] == [body["sha256"]]
    assert any(body["id"] in message for message in broker_messages(client))

    fetched = client.get(f"/v1/models/{body['id']}").json()
    assert fetched["status"] == "pending"
    assert fetched["parameters"] is None and fetched["error"] is None


def test_get_shows_the_inspection_once_done(client: TestClient, model_bytes: bytes) -> None:
    model_id = new_model(client, model_bytes)["id"]
    info = {
        "parameters": 67,
        "inputs": [{"name": "x", "shape": [None, 4], "dtype": "float32"}],
        "layers": [{"name": "0", "width": 8, "kind": "linear"}],
        "frozen": [],
    }
    client.app.state.store.models.set_inspected(model_id, ModelStatus.READY, info, None)
    body = client.get(f"/v1/models/{model_id}").json()
    assert body["status"] == "ready"
    assert {k: body[k] for k in ("parameters", "inputs", "frozen")} == {
        k: info[k] for k in ("parameters", "inputs", "frozen")
    }
    # Keys a group does not have are null: not coupled, not grouped, not frozen.
    assert body["layers"] == [
        {
            "name": "0", "width": 8, "kind": "linear", "coupled": None, "parts": None,
            "heads": None, "head_dim": None, "query_heads": None, "unit": None, "reason": None,
        }
    ]  # fmt: skip

    client.app.state.store.models.set_inspected(model_id, ModelStatus.INVALID, None, "op foo")
    body = client.get(f"/v1/models/{model_id}").json()
    assert (body["status"], body["error"], body["layers"]) == ("invalid", "op foo", None)


def test_non_archives_are_refused_and_not_kept(client: TestClient) -> None:
    for data in (
        b"not a zip at all",
        zip_bytes({"m/data/weights/w": b"0"}),  # no graph
        zip_bytes({"m/models/model.json": b"{}"}),  # no archive_format
        zip_bytes({"a/models/x.json": b"{}", "b/models/y.json": b"{}", "a/archive_format": b"pt2"}),
        b"PK\x03\x04 truncated",
    ):
        response = upload(client, "models", data, "model.pt2")
        assert response.status_code == 422, data
        error = response.json()["error"]
        assert error["code"] == "invalid_model"
        assert "torch.export.save" in error["message"]
    assert blob_files(client) == []
    assert broker_messages(client) == []


def test_minimal_archive_layout_passes_the_structural_check(client: TestClient) -> None:
    data = zip_bytes({"prog/models/model.json": b"{}", "prog/archive_format": b"pt2"})
    assert upload(client, "models", data, "x.pt2").status_code == 201


def test_filename_is_reduced_to_its_base_name(client: TestClient, model_bytes: bytes) -> None:
    response = upload(client, "models", model_bytes, "..\\..\\evil/../x.pt2")
    assert response.json()["filename"] == "x.pt2"
    assert clean_filename("a/b\\c\x00d\x1f.pt2") == "cd.pt2"
    assert clean_filename("../") == "upload"


def test_unknown_ids_are_404(client: TestClient) -> None:
    for method in ("GET", "DELETE"):
        response = client.request(method, "/v1/models/nope")
        assert response.status_code == 404
        assert response.json()["error"] == {
            "code": "not_found",
            "message": "model 'nope' not found",
        }


def test_delete_removes_the_record_and_the_unshared_file(
    client: TestClient, model_bytes: bytes
) -> None:
    first = new_model(client, model_bytes)["id"]
    second = new_model(client, model_bytes)["id"]  # same bytes, same blob
    assert client.delete(f"/v1/models/{first}").status_code == 204
    assert client.get(f"/v1/models/{first}").status_code == 404
    assert len(blob_files(client)) == 1  # still used by the second record
    assert client.delete(f"/v1/models/{second}").status_code == 204
    assert blob_files(client) == []


def test_delete_refuses_a_model_a_job_is_using(client: TestClient, model_bytes: bytes) -> None:
    model_id = new_model(client, model_bytes)["id"]
    dataset_id = new_dataset(client)["id"]
    job = client.post("/v1/jobs", json={"model_id": model_id, "dataset_id": dataset_id}).json()
    response = client.delete(f"/v1/models/{model_id}")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "in_use"
    assert client.delete(f"/v1/datasets/{dataset_id}").status_code == 409

    client.post(f"/v1/jobs/{job['id']}/cancel")
    assert client.delete(f"/v1/models/{model_id}").status_code == 204


def test_upload_with_the_broker_down_stores_nothing(
    make_client: ClientFactory, model_bytes: bytes
) -> None:
    client = make_client(broker_url=CLOSED_BROKER)
    response = upload(client, "models", model_bytes, "mlp.pt2")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "broker_unavailable"
    assert blob_files(client) == []


# -- the upload stream (shared with datasets) -----------------------------------------------
def _tmp_files(client: TestClient) -> list[str]:
    folder = client.app.state.blobs.tmp_dir
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_413_from_content_length_before_reading(make_client: ClientFactory) -> None:
    client = make_client(max_upload_bytes=1000)
    response = upload(client, "models", b"\0" * 200_000, "big.pt2")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert _tmp_files(client) == [] and blob_files(client) == []


def test_413_while_streaming_without_content_length(make_client: ClientFactory) -> None:
    client = make_client(max_upload_bytes=1000)
    boundary = "deadweightboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.pt2"\r\n\r\n'
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def body() -> Iterator[bytes]:  # a generator: sent chunked, no Content-Length
        yield head
        for _ in range(10):
            yield b"\0" * 500
        yield tail

    response = client.post(
        "/v1/models",
        content=body(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 413
    assert _tmp_files(client) == [] and blob_files(client) == []


def test_exactly_the_limit_is_accepted(make_client: ClientFactory) -> None:
    data = zip_bytes({"m/models/model.json": b"{}", "m/archive_format": b"pt2"})
    client = make_client(max_upload_bytes=len(data))
    assert upload(client, "models", data, "m.pt2").status_code == 201


def test_form_errors_are_400_or_415(client: TestClient, model_bytes: bytes) -> None:
    response = client.post("/v1/models", json={"file": "x"})
    assert response.status_code == 415
    response = upload(client, "models", model_bytes, "m.pt2", comment="hi")
    assert response.status_code == 400
    assert "unexpected form field 'comment'" in response.json()["error"]["message"]
    response = client.post(
        "/v1/models",
        content=b'--b\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nab',
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    assert response.status_code == 400  # no closing boundary
    assert _tmp_files(client) == []


def test_a_model_reports_its_groups_coupled_grouped_heads_and_frozen(
    client: TestClient, tmp_path: Path
) -> None:
    """The worker's real inspection of a ResNeXt-style and a Llama-style program (grouped-
    query attention), read over HTTP."""
    from tests.tiny_models import export_to
    from tests.zoo import build
    from worker.inspection import execute_inspection

    state = client.app.state
    shapes = {}
    for name in ("resnext", "llama"):
        model = build(name)
        path = export_to(model, tmp_path / f"{name}.pt2", d_in=model.input_shape)
        model_id = upload(client, "models", path.read_bytes(), f"{name}.pt2").json()["id"]
        execute_inspection(model_id, state.store, state.blobs, state.settings)
        body = client.get(f"/v1/models/{model_id}").json()
        assert body["status"] == "ready", body["error"]
        shapes[name] = body

    layers = {g["name"]: g for g in shapes["resnext"]["layers"]}
    assert layers["grouped.0"]["parts"] == 4 and layers["grouped.0"]["kind"] == "conv"
    assert "se.expand" in layers["grouped.0"]["coupled"]  # the SE gate multiplies these
    assert layers["stem.0"]["coupled"] == ["stem.0", "expand.0"]  # the residual add
    assert layers["reduce.0"] == {
        "name": "reduce.0", "width": 12, "kind": "conv", "coupled": None, "parts": 4,
        "heads": None, "head_dim": None, "query_heads": None, "unit": None, "reason": None,
    }  # fmt: skip
    (output,) = shapes["resnext"]["frozen"]  # the logits are never cut
    assert output["name"] == "fc" and output["reason"]
    assert shapes["resnext"]["inputs"] == [
        {"name": "x", "shape": [None, 8, 8, 8], "dtype": "float32"}
    ]
    heads = {g["name"]: g for g in shapes["llama"]["layers"]}["q_proj"]
    assert (heads["kind"], heads["coupled"]) == ("head", ["q_proj", "k_proj", "v_proj"])
    # 2 key/value heads cut as units, each with the 4 query heads that share it
    assert (heads["width"], heads["heads"], heads["query_heads"], heads["head_dim"]) == (2, 2, 8, 4)
    frozen = {g["name"]: g["reason"] for g in shapes["llama"]["frozen"]}
    assert all(frozen.values())
