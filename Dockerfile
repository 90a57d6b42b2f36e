# syntax=docker/dockerfile:1
# The `protonn` image: one binary on distroless (glibc, libgcc and CA certificates, no shell,
# no package manager), running as a non-root user with a read-only root file system (the Helm
# chart mounts /etc/protonn, /data and /tmp).
#
# The bases are pinned by digest. These machines reach no container registry, so the digests
# below were not pulled here: they are the ones many independent public projects pin for the
# same tags (looked up 2026-12-07). Check and refresh them where you build, then rebuild:
#   skopeo inspect --format '{{.Digest}}' docker://docker.io/library/rust:1.90-bookworm
#   skopeo inspect --format '{{.Digest}}' docker://gcr.io/distroless/cc-debian12:nonroot
#   docker build --build-arg COMMIT=$(git rev-parse --short=12 HEAD) -t protonn:0.1.0 .
# Without a Docker engine, scripts/build-image assembles an equivalent OCI image from the
# locally built binary and starts it under bubblewrap.
ARG RUST_IMAGE=rust:1.90-bookworm@sha256:3914072ca0c3b8aad871db9169a651ccfce30cf58303e5d6f2db16d1d8a7e58f
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f

# The dependency-cache layer: cargo-chef reduces the workspace to its manifests (a recipe),
# and the dependencies built from it stay cached until Cargo.lock or a manifest changes.
FROM ${RUST_IMAGE} AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
COPY --from=planner /src/recipe.json recipe.json
# jemalloc's tuning (.cargo/config.toml) is built into it with the dependencies.
COPY .cargo .cargo
RUN cargo chef cook --release --locked -p protonn-cluster --recipe-path recipe.json
COPY . .
# .git is not in the build context (.dockerignore): build.rs takes the commit from here.
ARG COMMIT=unknown
RUN PROTONN_COMMIT=${COMMIT} cargo build --release --locked -p protonn-cluster \
    && install -m 0755 target/release/protonn /usr/local/bin/protonn

FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="protonn" \
      org.opencontainers.image.description="Pro-tonn, a sharded, actor-based Discord bot cluster" \
      org.opencontainers.image.source="https://github.com/protonn/protonn" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"
COPY --from=build /usr/local/bin/protonn /usr/local/bin/protonn
# The chart runs every pod as 10001 (and mounts /data writable for it).
USER 10001:10001
WORKDIR /data
# 9464: /metrics, /healthz, /readyz. 7070: coordinator gRPC (cluster mode).
EXPOSE 9464 7070
ENTRYPOINT ["/usr/local/bin/protonn"]
CMD ["run", "--config", "/etc/protonn/protonn.toml"]
