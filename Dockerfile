# courier-server as a container image: built with the Rust image, run on distroless
# (glibc, CA certificates, no shell) as the non-root user 65532.
#   docker build -t courier-server:0.1.0 .
# The server listens on 0.0.0.0 inside the container (gRPC 50051, metrics 9464) and
# keeps its data (the JWT secret unless COURIER_JWT_SECRET is set, the offline cache,
# media on the default local store) in the volume /var/lib/courier.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# The whole workspace (see .dockerignore): cargo reads every member's manifest.
COPY . .
RUN cargo build --release --locked -p courier-server --bin courier-server \
    && install -D target/release/courier-server /out/courier-server \
    && mkdir -p /out/data

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/courier-server /usr/local/bin/courier-server
COPY --from=build --chown=65532:65532 /out/data /var/lib/courier
ENV COURIER_LISTEN=0.0.0.0:50051 \
    COURIER_METRICS_LISTEN=0.0.0.0:9464 \
    COURIER_DATA_DIR=/var/lib/courier
VOLUME /var/lib/courier
EXPOSE 50051 9464
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/courier-server"]
CMD ["serve"]
