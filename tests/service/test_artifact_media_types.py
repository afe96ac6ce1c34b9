"""`GET /v1/jobs/{id}/artifacts/{name}`: the media types its OpenAPI entry documents are the
ones it serves, for every kind of file a job publishes (ONNX copies included)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.service.api_helpers import new_dataset, new_model, publish_job

# What each kind of published file is served as (the media type, without its parameters).
SERVED = {
    "report.html": "text/html",
    "tradeoff.png": "image/png",
    "results.csv": "text/csv",
    "results.json": "application/json",
    "pruned-0.pt2": "application/zip",
    "pruned-0.onnx": "application/octet-stream",
    "baseline.onnx": "application/octet-stream",
}


def test_each_artifact_is_served_with_a_documented_media_type(
    client: TestClient, model_bytes: bytes
) -> None:
    spec = client.get("/openapi.json").json()
    ok = spec["paths"]["/v1/jobs/{job_id}/artifacts/{name}"]["get"]["responses"]["200"]
    documented = set(ok["content"])
    assert documented == set(SERVED.values())
    for media in documented:  # each named in the description, with the files it covers
        assert f"`{media}`" in ok["description"]

    body = {
        "model_id": new_model(client, model_bytes)["id"],
        "dataset_id": new_dataset(client)["id"],
    }
    job_id = client.post("/v1/jobs", json=body).json()["id"]
    folder = publish_job(client, job_id)  # results.json, stats.json, pruned-0.pt2
    for name in ("report.html", "tradeoff.png", "results.csv", "pruned-0.onnx", "baseline.onnx"):
        (folder / name).write_bytes(b"some bytes")
    listed = {a["name"]: a["media_type"] for a in client.get(f"/v1/jobs/{job_id}/artifacts").json()}
    for name, media in SERVED.items():
        response = client.get(f"/v1/jobs/{job_id}/artifacts/{name}")
        assert response.status_code == 200, (name, response.text)
        served = response.headers["content-type"]
        assert served.split(";")[0].strip() == media, (name, served)
        assert listed[name].split(";")[0].strip() == media, (name, listed[name])
        attachment = response.headers.get("content-disposition", "")
        assert attachment.startswith("attachment") == (name != "report.html"), name
