# One image for the KIS-S controller and the stub inference server; the command picks:
#   docker run kis-s controller run --prometheus-url ...   (default)
#   docker run kis-s stub serve --host 0.0.0.0
# No torch: the training extra is not installed.
FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /opt/kis
COPY pyproject.toml README.md ./
COPY controller ./controller
COPY simulator ./simulator
RUN /opt/kis/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/kis/bin/pip install --no-cache-dir --no-compile . \
 && /opt/kis/bin/pip uninstall -y pip setuptools \
 # the asyncio variant of the Kubernetes client (68 MB) is never imported
 && rm -rf /opt/kis/lib/python3.11/site-packages/kubernetes/aio \
 && find /opt/kis -name "__pycache__" -prune -exec rm -rf {} +

FROM python:3.11-slim
RUN groupadd --gid 65532 kis && useradd --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin kis
COPY --from=build /opt/kis /opt/kis
ENV PATH=/opt/kis/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 65532:65532
EXPOSE 8080 8000
ENTRYPOINT ["kis"]
CMD ["controller", "run"]
