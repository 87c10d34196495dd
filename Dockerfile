# bridge as a container: `bridge run` as a non-root user, state in a volume.
#
#   docker build -t bridge .
#   docker run -d --name bridge -p 8080:8080 \
#     -v "$PWD/rules.toml:/etc/bridge/rules.toml:ro" \
#     -v bridge-state:/var/lib/bridge \
#     --env-file bridge.env bridge
#
# The config must listen on all interfaces inside the container and keep its state in the
# volume: `[bridge] listen = "0.0.0.0:8080"`, `state = "sqlite:////var/lib/bridge/state.db"`.
# Templates it does not bring (mount them at /etc/bridge/templates) are the bundled ones.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bridge ./bridge
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BRIDGE_CONFIG=/etc/bridge/rules.toml \
    BRIDGE_LOG_FORMAT=json \
    BRIDGE_HEALTHZ_URL=http://127.0.0.1:8080/healthz
COPY --from=build /wheels /tmp/wheels
RUN pip install --no-cache-dir /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels \
    && groupadd --system --gid 10001 bridge \
    && useradd --system --uid 10001 --gid bridge --home-dir /var/lib/bridge \
       --shell /usr/sbin/nologin bridge \
    && mkdir -p /etc/bridge /var/lib/bridge \
    && chown bridge:bridge /var/lib/bridge
# Declared after the chown, so a fresh named volume starts owned by the bridge user.
VOLUME ["/var/lib/bridge"]
WORKDIR /var/lib/bridge
USER bridge:bridge
EXPOSE 8080
# slim has no curl: the interpreter does the probe. Set BRIDGE_HEALTHZ_URL when the config
# listens elsewhere.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['BRIDGE_HEALTHZ_URL'], timeout=4)"]
# SIGTERM (docker stop) drains deliveries for up to --drain-timeout seconds; give docker stop
# a longer --time than that.
STOPSIGNAL SIGTERM
CMD ["bridge", "run", "--drain-timeout", "10"]
