# syntax=docker/dockerfile:1
# The kafka-consumer-proxy operator. Build from the repository root:
#   docker build -f images/operator.Dockerfile -t <registry>/kcp-operator:<tag> .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY .ci/build-deps.sh .ci/build-deps.sh
RUN .ci/build-deps.sh
COPY . .
RUN cargo build --release --locked -p kcp-operator --bin kcp-operator \
 && cp target/release/kcp-operator /kcp-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /kcp-operator /usr/local/bin/kcp-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/kcp-operator"]
