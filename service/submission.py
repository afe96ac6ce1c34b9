"""The checks a job submission goes through, from the request to its queued row.

In order: the uploads exist and are the tenant's, the request fits its model and data and
the server's limits (404, 422), the tenant's work in flight and storage (429, 507), and the
row is written only while its uploads still exist.
"""

from __future__ import annotations

from jobs.blobs import BlobStore
from jobs.datasets import DatasetFileError, DatasetFormat, DatasetInfo, check_fits_model
from jobs.job_config import JobConfig, Metric, resolve_metric
from jobs.job_table import UploadGone
from jobs.records import DatasetRecord, JobRecord, ModelRecord
from jobs.settings import Settings
from jobs.states import ModelStatus
from jobs.store import JobStore
from service.errors import InvalidJob, InvalidModel, NotFound
from service.job_schemas import JobCreate
from service.limits import check_jobs_in_flight, check_storage


def add_checked_job(
    body: JobCreate, tenant: str, store: JobStore, blobs: BlobStore, settings: Settings
) -> JobRecord:
    """Check a submission and write its queued job (the caller sends the message)."""
    model, dataset, eval_dataset = _lookup(store, tenant, body)
    config = checked_config(body, model, dataset, eval_dataset, settings)
    # After the request's own errors (404, 422), which tell the client more.
    check_jobs_in_flight(store, settings, tenant)
    # What the job will publish is unknown yet: refuse only a tenant already at its quota.
    check_storage(store, blobs, settings, tenant, 0)
    try:
        return store.jobs.add(
            tenant,
            model.id,
            dataset.id,
            body.eval_dataset_id,
            config.to_json(),
            verify_uploads=True,
        )
    except UploadGone as exc:
        raise NotFound(
            f"upload {exc.upload_id} was deleted while this job was being submitted"
        ) from exc


def _lookup(
    store: JobStore, tenant: str, body: JobCreate
) -> tuple[ModelRecord, DatasetRecord, DatasetRecord | None]:
    model = store.models.get(tenant, body.model_id)
    if model is None:
        raise NotFound(f"model {body.model_id!r} not found")
    dataset = store.datasets.get(tenant, body.dataset_id)
    if dataset is None:
        raise NotFound(f"dataset {body.dataset_id!r} not found")
    eval_dataset = None
    if body.eval_dataset_id is not None:
        eval_dataset = store.datasets.get(tenant, body.eval_dataset_id)
        if eval_dataset is None:
            raise NotFound(f"evaluation dataset {body.eval_dataset_id!r} not found")
    return model, dataset, eval_dataset


def _model_input_shape(model: ModelRecord) -> list[int | None] | None:
    """The first input's declared shape (None for dynamic dims), once a worker has read it."""
    if model.status is not ModelStatus.READY or not model.info:
        return None
    inputs = model.info.get("inputs")
    if not isinstance(inputs, list) or not inputs or not isinstance(inputs[0], dict):
        return None
    shape = inputs[0].get("shape")
    if not isinstance(shape, list) or not all(d is None or isinstance(d, int) for d in shape):
        return None
    return shape


def _check_fits(model: ModelRecord, datasets: list[DatasetRecord]) -> None:
    shape = _model_input_shape(model)
    if shape is None:
        return  # not inspected yet: the worker checks again before it runs
    for ds in datasets:
        # check_fits_model reads the per-sample shape only; the record keeps no dtype.
        info = DatasetInfo(
            format=DatasetFormat(ds.format),
            samples=ds.samples,
            x_shape=list(ds.x_shape),
            has_labels=ds.has_labels,
            x_dtype="unknown",
            y_kind=None,
            label_column=ds.label_column,
        )
        try:
            check_fits_model(info, shape)
        except DatasetFileError as exc:
            raise DatasetFileError(
                f"dataset {ds.id!r} does not fit model {model.id!r}: {exc}"
            ) from exc


def _resolve_metric(body: JobCreate, evaluation: DatasetRecord) -> Metric:
    try:
        return resolve_metric(body.metric, evaluation.has_labels)
    except ValueError:
        raise InvalidJob(
            f"metric {str(body.metric)!r} compares predictions with labels, and the evaluation "
            f"dataset {evaluation.id!r} has none: upload it with labels (array y, or "
            "label_column for CSV) or use metric 'agreement'"
        ) from None


def checked_config(
    body: JobCreate,
    model: ModelRecord,
    dataset: DatasetRecord,
    eval_dataset: DatasetRecord | None,
    settings: Settings,
) -> JobConfig:
    """Check the request against its records and settings; the config the worker will run."""
    if body.thresholds is not None and len(body.thresholds) > settings.max_thresholds:
        raise InvalidJob(
            f"{len(body.thresholds)} thresholds given; this server runs at most "
            f"{settings.max_thresholds} per job (DEADWEIGHT_MAX_THRESHOLDS)"
        )
    if model.status is ModelStatus.INVALID:
        raise InvalidModel(
            f"model {model.id!r} cannot be pruned: {model.error or 'it failed inspection'}"
        )
    _check_fits(model, [d for d in (dataset, eval_dataset) if d is not None])
    return JobConfig(
        criterion=body.resolved_criterion,
        thresholds=None if body.thresholds is None else tuple(t.spec() for t in body.thresholds),
        compensate=body.compensate,  # a boolean became mean/none
        allocation=body.allocation,
        recovery=None if body.recovery is None else body.recovery.spec(),
        search=body.search,
        seed=body.seed,
        # Resolved here, so results never depend on a later default.
        metric=_resolve_metric(body, eval_dataset or dataset),
        max_metric_drop=body.max_metric_drop,
    )
