"""A pipeline step that uses nothing but `deadweight_client` (the tests run it by a Python
that has no torch): upload, submit (with a webhook when given one), wait with a progress
callback, download the recommended model, or the results table when nothing is recommended.

Usage: python pipeline_script.py MODEL DATA OUT_DIR [WEBHOOK_URL]
       (DEADWEIGHT_URL, DEADWEIGHT_API_KEY)
Prints one JSON object: what happened.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from deadweight_client import Client, Job, NoRecommendation


def main(model_path: str, data_path: str, out: str, webhook_url: str | None = None) -> int:
    seen: list[list[object]] = []

    def on_progress(job: Job) -> None:
        seen.append([job.status, job.progress["stage"], job.progress["fraction"]])

    with Client() as client:
        model = client.upload_model(model_path)  # returns once inspected
        data = client.upload_dataset(data_path)
        webhook = {"url": webhook_url} if webhook_url else None
        job = client.submit(
            model, data, thresholds=[0.1, 0.3, 0.5], compensate="linear", webhook=webhook
        )
        job.wait(timeout=240, on_progress=on_progress)
        job.raise_for_status()
        try:
            downloaded = job.download("recommended", Path(out) / "pruned.pt2")
            recommended = True
        except NoRecommendation:
            downloaded = job.download("results.json", out)
            recommended = False
        results = job.results()
    print(
        json.dumps(
            {
                "model": model,
                "job": job.record,
                "progress": seen,
                "downloaded": str(downloaded),
                "recommended": recommended,
                "results": results,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
