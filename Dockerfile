# One image for the KIS-S controller and the stub inference server; the command picks:
#   docker run kis-s controller run --prometheus-url ...   (default)
#   docker run kis-s stub serve --host 0.0.0.0
# No torch, no simulator extras: the runtime dependencies only, at the exact versions and hashes of
# requirements/image.lock (bash scripts/lock_image). Built and checked where no Docker engine runs with
# bash scripts/build_image (buildah), which records the size in bench/results/image.md.
#
# The base is pinned by digest: python:3.11-slim as published on Docker Hub (and mirrored with the same digest on
# public.ecr.aws/docker/library). This digest could not be resolved on the development machines (no registry serves
# base images there); it is the one two unrelated public projects pin for python:3.11-slim. Refresh it with
#   docker buildx imagetools inspect docker.io/library/python:3.11-slim
# scripts/build_image overrides BASE_IMAGE with a stand-in made with debootstrap (see that script for how it differs).
ARG BASE_IMAGE=docker.io/library/python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7

FROM ${BASE_IMAGE} AS build
# a CA bundle for pip where a TLS-intercepting proxy fronts the registry (scripts/build_image mounts the host's)
ARG PIP_CERT=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/kis
COPY requirements/image.lock requirements/build.lock ./
RUN /opt/kis/bin/pip install ${PIP_CERT:+--cert "$PIP_CERT"} --no-deps --require-hashes --only-binary=:all: -r image.lock \
 && /opt/kis/bin/pip install ${PIP_CERT:+--cert "$PIP_CERT"} --no-deps --require-hashes --only-binary=:all: -r build.lock
COPY pyproject.toml README.md ./
COPY controller ./controller
COPY simulator ./simulator
COPY scripts/prune_image_venv ./
# the build backend comes from build.lock (no isolated build fetching unpinned setuptools), then leaves with pip
RUN /opt/kis/bin/pip install --no-deps --no-build-isolation --no-compile . \
 && /opt/kis/bin/pip uninstall -q -y wheel \
 && sh prune_image_venv /opt/kis

FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="kis-s" \
      org.opencontainers.image.description="KIS-S: the KIScaler controller (GPU LLM-inference autoscaling on Kubernetes) and the stub inference server" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/kis-s/kis-s" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim"
# A real home (onnxruntime keeps an identifier there and logs a plain-text warning on every start without one).
RUN groupadd --gid 65532 kis && useradd --uid 65532 --gid 65532 --home-dir /home/kis --create-home --shell /usr/sbin/nologin kis
COPY --from=build /opt/kis /opt/kis
ENV PATH=/opt/kis/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOME=/home/kis
USER 65532:65532
WORKDIR /home/kis
EXPOSE 8080 8000
ENTRYPOINT ["kis"]
CMD ["controller", "run"]
