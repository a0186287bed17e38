# One image with every binary: auth-service, task-service, migrate, health-probe.
# Built by docker-compose.yml (`docker compose up --build`).

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# No system protoc is needed: protox compiles proto/ in the build script.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
      -p auth-service -p task-service -p migrations -p todo-stack \
    && mkdir -p /out \
    && cp target/release/auth-service target/release/task-service \
          target/release/migrate target/release/health-probe /out/

FROM debian:bookworm-slim
# The system's CA certificates, for an https:// AUTH_SERVICE_URL verified without
# AUTH_SERVICE_CA_FILE (a certificate from a public CA).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --create-home todo
COPY --from=build /out/ /usr/local/bin/
USER todo
WORKDIR /home/todo
EXPOSE 50051 50052
# Each compose service names the binary it runs.
CMD ["auth-service"]
