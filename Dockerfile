# dusk-relay container image. See DOCKER.md.
#
#   docker build -t dusk-relay .            compiles the relay in the official Rust image
#   docker build --build-arg BINARY=prebuilt -t dusk-relay .
#                                           copies an already built target/release/dusk-relay
#                                           (`cargo build --release --locked` on a glibc >= 2.36
#                                           Linux first): CI, and machines without registry access
#
# Needs BuildKit (the default builder since Docker 23; `DOCKER_BUILDKIT=1` before that).

ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim
ARG BINARY=build

# ---- build: the relay from source, with the registry and target dir cached between builds
FROM ${RUST_IMAGE} AS build
# aws-lc-sys (QUIC's TLS) and ring compile C.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto ./proto
COPY src ./src
# asynchronous-codec with its buffers on demand ([patch.crates-io] in Cargo.toml).
COPY vendor ./vendor
# Not built here, but Cargo.toml declares them (a bench target, a workspace member) and
# cargo reads every declared one.
COPY benches ./benches
COPY bench ./bench
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin dusk-relay \
 && install -D -m 0755 target/release/dusk-relay /out/dusk-relay

# ---- prebuilt: a binary built outside Docker
FROM scratch AS prebuilt
COPY target/release/dusk-relay /out/dusk-relay

FROM ${BINARY} AS binary

# ---- runtime: Debian slim, the binary only, non-root
FROM ${RUNTIME_IMAGE}
# ca-certificates: the ACME client (DUSK_RELAY_ACME_DOMAINS) trusts the CA's HTTPS
# through the system's roots.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN useradd --uid 1000 --user-group --home-dir /data --no-create-home --shell /usr/sbin/nologin dusk \
 && mkdir -p /data \
 && chown 1000:1000 /data \
 && chmod 0700 /data
COPY --from=binary /out/dusk-relay /usr/local/bin/dusk-relay

# dirs::data_dir() is $XDG_DATA_HOME: the keypair lives at /data/dusk-relay/keypair, the
# original image's path, so existing volumes keep their peer id.
ENV XDG_DATA_HOME=/data \
    RUST_LOG=info \
    DUSK_RELAY_PORT=4001 \
    DUSK_RELAY_WS_PORT=14001 \
    DUSK_RELAY_WSS_PORT=24001
VOLUME ["/data"]
USER 1000:1000
WORKDIR /data
# TCP and QUIC (UDP) on 4001, WebSocket on 14001, secure WebSocket on 24001 (publish on 443).
EXPOSE 4001/tcp 4001/udp 14001/tcp 24001/tcp
# The relay handles SIGTERM itself: it closes listeners and connections and exits 0.
STOPSIGNAL SIGTERM
# Asks the relay itself: a libp2p handshake on the TCP port, answered with the relay's
# own peer id. Exec form: needs no shell.
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/dusk-relay", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/dusk-relay"]
