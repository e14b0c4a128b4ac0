# syntax=docker/dockerfile:1
#
# tokengate container image:
#   docker build -t tokengate:0.1.0 .
#   docker run --rm -v "$PWD/my-config:/etc/tokengate:ro" -p 9001:9001 -p 8080:8080 -p 9090:9090 tokengate:0.1.0
#
# The image holds the binary only. The configuration (and the keys it names) is
# mounted at /etc/tokengate; deploy/kubernetes does that with a ConfigMap and a Secret.

# ------------------------------------------------------------------ build
FROM rust:1.95-bookworm AS build
WORKDIR /src

# Dependency layer: build every dependency against stub sources, so that this layer is
# reused until a manifest, Cargo.lock or the benches change. Cargo refuses to read a
# workspace whose members' manifests are missing, or a manifest whose declared targets
# ([[bench]] decision, ...) have no file, so those come along (tests/it/deploy.rs checks
# this against Cargo.toml).
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
COPY crates/core/Cargo.toml ./crates/core/
COPY crates/tools/Cargo.toml ./crates/tools/
RUN mkdir -p src crates/core/src crates/tools/src \
    && echo 'fn main() {}' > src/main.rs \
    && echo 'fn main() {}' > crates/tools/src/main.rs \
    && touch src/lib.rs crates/core/src/lib.rs crates/tools/src/lib.rs \
    && cargo build --release --locked -p tokengate --bin tokengate \
    && rm -rf src crates/core/src crates/tools/src

# The real sources. touch: COPY keeps the files' old mtimes, which cargo would
# otherwise take for "older than the stub build" and skip recompiling.
COPY src ./src
COPY crates ./crates
RUN touch src/main.rs src/lib.rs crates/core/src/lib.rs \
    && cargo build --release --locked -p tokengate --bin tokengate \
    && cp target/release/tokengate /tokengate

# ------------------------------------------------------------------ run
# distroless/cc: glibc and libgcc, no shell, no package manager; runs as nonroot
# (uid 65532), which deploy/kubernetes also sets.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /tokengate /usr/local/bin/tokengate
USER 65532:65532
# gRPC Check (9001), HTTP: logout and /authz (8080), admin: /metrics /healthz /readyz (9090)
EXPOSE 9001 8080 9090
ENTRYPOINT ["/usr/local/bin/tokengate"]
CMD ["serve", "--config", "/etc/tokengate/tokengate.yaml"]
