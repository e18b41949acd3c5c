# The runner's image: kuberunner and its pinned dependencies in a venv on Python 3.11 slim, run as an
# unprivileged user. Wheels only (no compiler in either stage); the build stage's pip and caches stay
# behind. deploy/chart runs it with `run -c /var/lib/kuberunner/config.toml`.
#   docker build -t kuberunner:0.1.0 .
FROM python:3.11-slim AS build
RUN python -m venv /opt/kuberunner
COPY deploy/requirements.txt /src/deploy/requirements.txt
RUN /opt/kuberunner/bin/pip install --no-cache-dir --only-binary=:all: -r /src/deploy/requirements.txt
COPY pyproject.toml README.md /src/
COPY kuberunner /src/kuberunner
# --no-deps: everything it needs is pinned above; this adds kuberunner itself (and its console script).
RUN /opt/kuberunner/bin/pip install --no-cache-dir --no-deps /src \
    && rm -rf /opt/kuberunner/bin/pip* /opt/kuberunner/lib/python3.11/site-packages/pip

FROM python:3.11-slim
RUN groupadd --gid 10001 kuberunner \
    && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin kuberunner
COPY --from=build /opt/kuberunner /opt/kuberunner
ENV PATH=/opt/kuberunner/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /home/kuberunner
ENTRYPOINT ["kuberunner"]
CMD ["run", "-c", "/etc/kuberunner/config.toml"]
