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
# reused until Cargo.toml, Cargo.lock or the benches change. Cargo refuses to read a
# manifest whose declared targets ([[bench]] decision, ...) have no file, so their
# directories come along (tests/deploy.rs checks this against Cargo.toml).
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked --bin tokengate \
    && rm -rf src

# The real sources. touch: COPY keeps the files' old mtimes, which cargo would
# otherwise take for "older than the stub build" and skip recompiling.
COPY src ./src
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin tokengate \
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
