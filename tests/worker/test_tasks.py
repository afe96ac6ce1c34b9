"""The worker's Celery tasks: registered by their decorators under the names the API sends,
and a worker's parent process that never imports torch or the engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_tasks_are_registered_by_name_and_the_parent_imports_no_torch(
    tmp_path: Path,
) -> None:
    # A fresh interpreter, as a worker's parent process starts: the app, then its includes.
    code = (
        "import json, sys\n"
        "from worker.celery_app import app\n"
        "app.loader.import_default_modules()\n"
        "from jobs.queue import INSPECT_MODEL_TASK, RUN_JOB_TASK\n"
        "tasks = {n: app.tasks[n].acks_late for n in (RUN_JOB_TASK, INSPECT_MODEL_TASK)}\n"
        "import worker.tasks\n"
        "roots = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'pruning'})\n"
        "print(json.dumps({'tasks': tasks, 'imported': roots,\n"
        "                  'run_job': worker.tasks.run_job.name}))\n"
    )
    env = {**os.environ, "DEADWEIGHT_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["tasks"] == {"deadweight.run_job": True, "deadweight.inspect_model": True}
    assert seen["run_job"] == "deadweight.run_job"
    assert seen["imported"] == []  # the supervisor never touches torch (nor CUDA)
