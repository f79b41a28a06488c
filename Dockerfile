# The worker program, the starter CLI and the demo agent in one image.
# Built static (CGO_ENABLED=0), run as an unprivileged user: the worker
# program starts the agents, which inherit its user.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/ ./worker ./cmd/starter ./cmd/demo-agent

# Debian, not distroless: the agents a worker type runs need a shell and the
# usual tools, and are installed into images derived from this one.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates procps \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --create-home --home-dir /var/lib/worker-lifecycle lifecycle \
    && mkdir -p /var/lib/worker-lifecycle/logs /var/lib/worker-lifecycle/state /var/lib/worker-lifecycle/archive \
    && chown -R lifecycle: /var/lib/worker-lifecycle
COPY --from=build /out/ /usr/local/bin/
USER 10001:10001
# The state (state/<host>) and the archive (archive/) sit beside the logs.
ENV WORKER_LOG_DIR=/var/lib/worker-lifecycle/logs
WORKDIR /var/lib/worker-lifecycle
ENTRYPOINT ["/usr/local/bin/worker"]
