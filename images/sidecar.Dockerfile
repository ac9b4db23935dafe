# syntax=docker/dockerfile:1
# The kafka-consumer-proxy sidecar. Build from the repository root:
#   docker build -f images/sidecar.Dockerfile -t <registry>/kcp-sidecar:<tag> .
# librdkafka is compiled from source and linked statically (rdkafka-sys's default); OpenSSL is
# the runtime image's libssl3.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY .ci/build-deps.sh .ci/build-deps.sh
RUN .ci/build-deps.sh
COPY . .
RUN cargo build --release --locked -p kcp-sidecar --bin kcp-sidecar \
 && cp target/release/kcp-sidecar /kcp-sidecar

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /kcp-sidecar /usr/local/bin/kcp-sidecar
USER 65532:65532
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/kcp-sidecar"]
