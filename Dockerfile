# The gateway with its embedded local runtime. Build: docker build -t runtime-gateway .
# Run:   docker run -p 50051:50051 runtime-gateway
# Stage 1 builds a virtualenv with the server and local extras; stage 2 copies only that.
FROM python:3.11-slim AS build
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY pyproject.toml constraints.txt README.md ./
COPY clients/python clients/python
COPY server server
RUN /opt/venv/bin/pip install -c constraints.txt '.[server,local]'

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 gateway
COPY --from=build /opt/venv /opt/venv
# A container must listen beyond loopback. Plaintext is the explicit choice here, for TLS
# terminated by the platform in front of it; to serve TLS itself, mount a certificate and
# set RUNTIME_GATEWAY_TLS_CERT and RUNTIME_GATEWAY_TLS_KEY (and RUNTIME_GATEWAY_INSECURE=0).
# The HEALTHCHECK then probes over TLS, trusting RUNTIME_GATEWAY_TLS_CERT (a self-signed
# certificate); for a CA-issued one set RUNTIME_GATEWAY_HEALTH_TLS_CA, and
# RUNTIME_GATEWAY_HEALTH_TLS_SERVER_NAME when the certificate does not name 127.0.0.1.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    RUNTIME_GATEWAY_LISTEN=0.0.0.0:50051 \
    RUNTIME_GATEWAY_INSECURE=1 \
    RUNTIME_GATEWAY_ADDRESS=127.0.0.1:50051
USER 10001
WORKDIR /home/gateway
EXPOSE 50051
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["runtime-gateway", "health"]
ENTRYPOINT ["runtime-gateway", "serve"]
