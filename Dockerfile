# The `protonn` image: one static-ish binary on Debian slim, running as a non-root user with a
# read-only root file system (the Helm chart mounts /etc/protonn, /data and /tmp).
#
# Not built in this project's CI: its machines have no Docker engine. Build it where one is:
#   docker build -t protonn:0.1.0 .
FROM rust:1.90-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p protonn-cluster \
    && install -m 0755 target/release/protonn /usr/local/bin/protonn

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 protonn \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /data protonn \
    && mkdir -p /data /etc/protonn \
    && chown 10001:10001 /data
COPY --from=build /usr/local/bin/protonn /usr/local/bin/protonn
USER 10001:10001
WORKDIR /data
# 9464: /metrics, /healthz, /readyz. 7070: coordinator gRPC (cluster mode).
EXPOSE 9464 7070
ENTRYPOINT ["/usr/local/bin/protonn"]
CMD ["run", "--config", "/etc/protonn/protonn.toml"]
