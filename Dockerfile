# scrim: a small runtime image with a static-ish binary, run as non-root.
#   docker build -t scrim .
#   docker run -e SCRIM_PSEUDONYM_KEY=... -v $PWD/config/example.yaml:/etc/scrim/scrim.yaml:ro -p 8080:8080 scrim
FROM rust:1-bookworm AS build
WORKDIR /src
# Dependencies first, so that a source change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
COPY benches benches
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked --bin scrim \
    && rm -rf src
COPY src src
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin scrim

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin scrim \
    && mkdir -p /etc/scrim
COPY --from=build /src/target/release/scrim /usr/local/bin/scrim
COPY config/example.yaml /etc/scrim/scrim.yaml
USER 10001
# In a container, listen on all interfaces: set `listen: 0.0.0.0:8080` and
# `admin: {listen: 0.0.0.0:9090}` in the mounted configuration.
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/scrim"]
CMD ["run", "--config", "/etc/scrim/scrim.yaml"]
