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
RUN pip install "torch==2.13.*" --index-url "${TORCH_INDEX}"

COPY pyproject.toml README.md ./
COPY pruning ./pruning
COPY jobs ./jobs
COPY service ./service
COPY worker ./worker
RUN pip install . && useradd --create-home --uid 1000 deadweight \
    && mkdir -p /data && chown deadweight /data

USER deadweight
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)" || exit 1

CMD ["deadweight", "serve", "--host", "0.0.0.0", "--port", "8000", "--no-worker"]
