# The `skidder` image: one binary for every role (indexer, searcher,
# compact, retention, search, inspect, demo). Build: docker build -t skidder .
FROM rust:1.95-bookworm AS build
# librdkafka is built from source with OpenSSL (libssl-dev is in the base);
# cmake is there in case aws-lc-sys needs it on the build platform.
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin skidder

FROM debian:bookworm-slim
# ca-certificates: HTTPS to S3 and STS (the AWS credential chain: IRSA,
# Pod Identity, instance profiles) and TLS to Kafka. libssl3: librdkafka's
# TLS and SASL. The binary links nothing else beyond glibc and zlib, which
# the base has.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/skidder /usr/local/bin/skidder
# No state on disk: object storage is the only state. Not root.
USER 65532:65532
ENTRYPOINT []
CMD ["skidder", "--help"]
