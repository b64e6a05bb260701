# vllm-ep-webhook image: `ep-webhook serve` as a non-root user on a read-only root filesystem.
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY webhook ./webhook
# Every dependency ships wheels: no compiler is needed, here or in the final stage.
RUN /opt/venv/bin/pip install --only-binary=:all: --no-compile . \
    && /opt/venv/bin/python -m compileall -q -j 0 /opt/venv

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/venv /opt/venv
# 65532: the conventional "nonroot" UID; numeric so runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["ep-webhook", "serve"]
CMD ["--cert-dir", "/etc/webhook/certs"]
