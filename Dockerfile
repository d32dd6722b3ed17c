# The c1m image the manifests in deploy/k8s name (c1m:0.1.0):
#   docker build -t c1m:0.1.0 .
# One binary; `c1m worker` processes are the same binary, started by c1m itself.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin c1m

FROM debian:bookworm-slim
# The system's roots, for wss:// servers with a public certificate.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/c1m /usr/local/bin/c1m
ENTRYPOINT ["c1m"]
