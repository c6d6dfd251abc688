# The Sluice controller image: a static binary on distroless, running as a non-root user.
#
#   docker build -t ghcr.io/sluice-rs/sluice:0.1.0 .
#
# The binary is the one `cargo build --release` makes, for the musl target so that it needs no
# libc in the image (TLS is rustls with ring: no OpenSSL either).

FROM docker.io/library/rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
COPY src src
COPY crates crates
COPY xtask xtask
# kubectl-sluice is a package of its own (crates/plugin), not a binary of the root package.
RUN cargo build --release --locked --target x86_64-unknown-linux-musl \
    -p sluice -p kubectl-sluice --bin sluice --bin kubectl-sluice

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/target/x86_64-unknown-linux-musl/release/sluice /usr/local/bin/sluice
COPY --from=build /src/target/x86_64-unknown-linux-musl/release/kubectl-sluice /usr/local/bin/kubectl-sluice
# The nonroot user of distroless (65532), as the chart's securityContext expects.
USER 65532:65532
EXPOSE 8090
ENTRYPOINT ["/usr/local/bin/sluice"]
