# The two images Lagless runs in Kubernetes, from one build:
#
#   docker build --target operator -t ghcr.io/lagless-dev/lagless-operator:0.1.0 .
#   docker build --target proxy    -t ghcr.io/lagless-dev/lagless-proxy:0.1.0 .
#
# The binaries are linked statically (musl, rustls: no OpenSSL), because the operator's binary
# is also copied into each MariaDB pod, whose image has its own C library, to run the seeding
# agent there (see docs/kubernetes.md).

FROM docker.io/library/rust:1-bookworm AS build
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
RUN cargo build --release --locked --target x86_64-unknown-linux-musl \
      -p lagless-operator -p lagless-proxy \
 && mkdir /out \
 && cp target/x86_64-unknown-linux-musl/release/lagless-operator \
       target/x86_64-unknown-linux-musl/release/lagless-proxy /out/

FROM gcr.io/distroless/static-debian12:nonroot AS operator
COPY --from=build /out/lagless-operator /usr/local/bin/lagless-operator
USER nonroot
ENTRYPOINT ["/usr/local/bin/lagless-operator"]

FROM gcr.io/distroless/static-debian12:nonroot AS proxy
COPY --from=build /out/lagless-proxy /usr/local/bin/lagless-proxy
USER nonroot
EXPOSE 6033 6034
ENTRYPOINT ["/usr/local/bin/lagless-proxy"]
