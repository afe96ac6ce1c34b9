"""POST/GET/DELETE /v1/datasets: validated in full at upload, by the real NumPy reader."""

from __future__ import annotations

import hashlib

import numpy as np
from fastapi.testclient import TestClient

from tests.service.api_helpers import blob_files, new_dataset, npz_bytes, upload

CSV = b"a,b,label\n0.5,1.0,0\n1.5,-2.0,1\n2.5,3.0,1\n"


def test_npz_with_labels(client: TestClient) -> None:
    data = npz_bytes(samples=16, features=4)
    body = new_dataset(client, data, "train.npz")
    assert body["format"] == "npz"
    assert (body["samples"], body["x_shape"], body["has_labels"]) == (16, [4], True)
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert body["bytes"] == len(data)
    assert body["filename"] == "train.npz"
    assert body["label_column"] is None
    assert body["created_at"].endswith("Z")
    assert client.get(f"/v1/datasets/{body['id']}").json() == body


def test_npz_without_labels_and_image_shaped_samples(client: TestClient) -> None:
    x = np.zeros((5, 3, 8, 8), dtype=np.float32)
    body = new_dataset(client, npz_bytes(labels=False, x=x))
    assert (body["samples"], body["x_shape"], body["has_labels"]) == (5, [3, 8, 8], False)


def test_csv_with_and_without_a_label_column(client: TestClient) -> None:
    labelled = new_dataset(client, CSV, "table.csv", label_column="label")
    assert labelled["format"] == "csv"
    assert (labelled["x_shape"], labelled["has_labels"]) == ([2], True)
    assert labelled["label_column"] == "label"
    # Without label_column, a column named like the labels must be declared a feature.
    plain = new_dataset(client, CSV, "table.csv", no_labels="true")
    assert (plain["x_shape"], plain["has_labels"]) == ([3], False)
    assert plain["sha256"] == labelled["sha256"]


def test_invalid_datasets_are_422_with_the_reason_and_not_kept(client: TestClient) -> None:
    nan = np.ones((4, 2), dtype=np.float32)
    nan[2, 1] = np.nan
    cases = [
        (npz_bytes(labels=False, x=nan), "data.npz", "NaN"),
        (npz_bytes(y=np.zeros(3, dtype=np.int64)), "data.npz", "label"),  # 16 x, 3 y
        (b"\x89PNG\r\n\x1a\n....", "picture.png", "not a dataset format"),
        (b"a,b\n1,x\n", "t.csv", "not a number"),
    ]
    for data, filename, reason in cases:
        response = upload(client, "datasets", data, filename)
        assert response.status_code == 422, (filename, response.text)
        error = response.json()["error"]
        assert error["code"] == "invalid_dataset"
        assert reason in error["message"], error["message"]
    assert blob_files(client) == []


def test_refused_upload_keeps_a_blob_another_record_uses(client: TestClient) -> None:
    new_dataset(client, CSV, "table.csv", label_column="label")
    response = upload(client, "datasets", CSV, "table.csv", label_column="missing")
    assert response.status_code == 422
    assert "no column 'missing'" in response.json()["error"]["message"]
    assert len(blob_files(client)) == 1


def test_label_column_is_for_csv_only(client: TestClient) -> None:
    response = upload(client, "datasets", npz_bytes(), "d.npz", label_column="y")
    assert response.status_code == 422
    assert "CSV" in response.json()["error"]["message"]


def test_missing_file_field_is_400(client: TestClient) -> None:
    response = client.post("/v1/datasets", files={"label_column": (None, "y")})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "bad_request"
    assert "'file'" in error["message"] and "required" in error["message"]


def test_oversized_text_field_is_400(client: TestClient) -> None:
    response = upload(client, "datasets", CSV, "t.csv", label_column="x" * 5000)
    assert response.status_code == 400
    assert "label_column" in response.json()["error"]["message"]
    assert blob_files(client) == []


def test_unknown_ids_are_404(client: TestClient) -> None:
    for method in ("GET", "DELETE"):
        response = client.request(method, "/v1/datasets/nope")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


def test_delete(client: TestClient) -> None:
    first = new_dataset(client)["id"]
    second = new_dataset(client)["id"]  # same bytes
    assert client.delete(f"/v1/datasets/{first}").status_code == 204
    assert client.get(f"/v1/datasets/{first}").status_code == 404
    assert len(blob_files(client)) == 1
    assert client.delete(f"/v1/datasets/{second}").status_code == 204
    assert blob_files(client) == []


def test_a_form_field_given_many_times_is_refused(client: TestClient) -> None:
    # Millions of tiny repeated parts once cost the API's event loop minutes of parsing.
    boundary = "b"
    repeated = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="label_column"\r\n\r\nlabel\r\n'
        for _ in range(3)
    )
    body = (
        repeated
        + f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="t.csv"\r\n\r\n'
        + CSV.decode()
        + f"\r\n--{boundary}--\r\n"
    ).encode()
    response = client.post(
        "/v1/datasets",
        content=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 400
    assert "more than once" in response.json()["error"]["message"]
    assert blob_files(client) == []
