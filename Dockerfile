# The operator image: one static-enough binary on a small glibc base. Member pods run the official
# postgres image and copy this binary out of the operator image with an init container.
# Build for both Raspberry Pi (arm64) and laptops (amd64):
#   docker buildx build --platform linux/amd64,linux/arm64 -t pgreplica:0.1.0 .
# The builder is Debian bookworm, like the official postgres images, so the binary's glibc
# requirement is met inside them.
FROM --platform=$BUILDPLATFORM rust:1-bookworm AS build
ARG TARGETARCH
RUN case "$TARGETARCH" in \
      arm64) apt-get update && apt-get install -y --no-install-recommends gcc-aarch64-linux-gnu libc6-dev-arm64-cross \
             && rustup target add aarch64-unknown-linux-gnu ;; \
      amd64) rustup target add x86_64-unknown-linux-gnu ;; \
    esac
WORKDIR /src
COPY . .
RUN case "$TARGETARCH" in \
      arm64) export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc T=aarch64-unknown-linux-gnu ;; \
      *) T=x86_64-unknown-linux-gnu ;; \
    esac \
 && cargo build --release --locked -p pgreplica --target "$T" \
 && cp "target/$T/release/pgreplica" /pgreplica

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /pgreplica /pgreplica
USER 65532:65532
ENTRYPOINT ["/pgreplica"]
CMD ["operator"]
