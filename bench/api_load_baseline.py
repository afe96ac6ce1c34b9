"""The yardstick of `bench.api_load`: a minimal FastAPI app that reads a job's row from the
same database with plain SQLAlchemy, served by the same uvicorn with the same settings as
`deadweight serve` (`service.server.uvicorn_config`).

It is what a competent minimal app would be: one engine, one Core SELECT by primary key and
tenant, the row returned as a dict, FastAPI's default JSON response; no authentication, no
middleware, no response model. `/healthz` answers a constant.

    python -m bench.api_load_baseline --port 8001 --database-url sqlite:////tmp/d/deadweight.db
"""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn
from fastapi import FastAPI, HTTPException
from sqlalchemy import create_engine, text

from jobs.settings import Settings
from service.server import uvicorn_config

# The tenant of open mode, or the bench's key's tenant: both are "default" here.
_SELECT = text("SELECT * FROM jobs WHERE id = :id AND tenant = :tenant")


def build_app(database_url: str) -> FastAPI:
    # A sync engine: FastAPI runs the plain `def` route in its thread pool.
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    app = FastAPI()

    @app.get("/v1/jobs/{job_id}")
    def get_job(job_id: str) -> dict[str, Any]:
        with engine.connect() as connection:
            row = connection.execute(_SELECT, {"id": job_id, "tenant": "default"}).mappings()
            found = row.one_or_none()
        if found is None:
            raise HTTPException(404, "job not found")
        return dict(found)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    args = parser.parse_args()
    # Settings() with no DEADWEIGHT_* set: the defaults `deadweight serve` runs with.
    config = uvicorn_config(build_app(args.database_url), "127.0.0.1", args.port, Settings())
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
