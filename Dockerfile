# One image for the API and the workers; the command decides which (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DEADWEIGHT_DATA_DIR=/data

WORKDIR /app

# CPU torch first, from the CPU index, so pip never pulls the CUDA build. For GPU workers,
# build with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
# The same release the Makefile installs (pyproject.toml pins torch==2.13.*).
RUN pip install "torch==2.13.0" --index-url "${TORCH_INDEX}"

COPY pyproject.toml README.md ./
COPY client ./client
COPY pruning ./pruning
COPY jobs ./jobs
COPY service ./service
COPY worker ./worker
# The client (deadweight-client, behind `deadweight submit` and `deadweight jobs`) is not on
# any index: pip takes it from ./client. The `mlflow` extra (the MLflow client, for jobs that
# log a run) and the `onnx` one (jobs with formats ["pt2", "onnx"]); `--build-arg EXTRAS=`
# leaves them out. Never `dev`: the image serves, it does not test.
ARG EXTRAS=mlflow,onnx
RUN pip install ./client ".${EXTRAS:+[$EXTRAS]}" && useradd --create-home --uid 1000 deadweight \
    && mkdir -p /data && chown deadweight /data
# /docs and /redoc load their assets from the installed package (package-data): fail the
# build, not the page, if they are missing. From /, so that ./service is not what is imported.
RUN cd / && python -c "from service.openapi_docs import STATIC_DIR as d; \
    assert (d / 'swagger-ui/swagger-ui-bundle.js').is_file(), d; \
    assert (d / 'redoc/redoc.standalone.js').is_file(), d"

USER deadweight
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)" || exit 1

CMD ["deadweight", "serve", "--host", "0.0.0.0", "--port", "8000", "--no-worker"]
