# snap-mqtt listener image. Built with the project's own install steps (scripts/setup.sh), the
# same ones the tests run on a fresh Debian 12 machine. NOTE: this image build is not exercised
# here (no container engine on the development machines); docker-compose.yml is validated.
FROM python:3.11-slim-bookworm

# CPU-only torch wheels (the PyPI default for x86-64 carries CUDA: gigabytes for nothing).
# On arm64 (Raspberry Pi) PyPI's wheels are CPU-only anyway.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_EXTRA_INDEX_URL=${TORCH_INDEX} \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    OMP_NUM_THREADS=1

WORKDIR /app
# the checkout, less what .dockerignore leaves out (virtual environments, runs, caches)
COPY . .
RUN scripts/setup.sh \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --no-create-home --groups audio snap \
    && mkdir -p /data && chown snap /data

ENV PATH=/app/.venv/bin:$PATH
USER snap
# SIGTERM: publishes "offline" and exits within 2 s. SIGHUP: reloads the model file.
STOPSIGNAL SIGTERM
ENTRYPOINT ["snap-mqtt"]
CMD ["listen"]
