# Multi-stage build: compile in the Rust image, run in a slim Debian with a non-root user.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY templates ./templates
COPY benches ./benches
COPY tests ./tests
RUN cargo build --release --locked --bin vitrine

FROM debian:bookworm-slim
# CA certificates: outbound HTTPS to platform APIs (BigCommerce) verifies against them.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin vitrine
WORKDIR /app
COPY --from=build /src/target/release/vitrine /usr/local/bin/vitrine
COPY config ./config
# The one place the service writes (the embedded store and the journal of buffered
# events): owned by its user, and a volume, so it outlives the container.
RUN mkdir -p /app/data && chown 10001:10001 /app/data
VOLUME /app/data
USER vitrine
# Listen on all interfaces inside the container; everything else is set with
# VITRINE__SECTION__KEY environment variables (see config/base.toml).
ENV VITRINE__SERVER__ADDR=0.0.0.0:8080 \
    VITRINE__LOG__FORMAT=json \
    VITRINE__STORAGE__PATH=/app/data/vitrine.redb \
    VITRINE_CONFIG_DIR=/app/config
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["vitrine", "healthcheck", "--url", "http://127.0.0.1:8080/livez"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["vitrine"]
CMD ["serve"]
