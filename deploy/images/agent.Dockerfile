# The mover image: arca-agent, run by the operator's backup and restore Jobs (docs/AGENT.md),
# plus the arca CLI, also installed as `restic` (clap ignores the program name, so `restic -r
# <repository> snapshots | restore | check` is arca answering), for the seed's recovery commands.
# Runs as a non-root user with a read-only root filesystem and no capabilities: it writes only
# to DATA_DIR, the cache (RESTIC_CACHE_DIR) and TMPDIR. Build from the repository root:
#   docker build -f deploy/images/agent.Dockerfile -t arca/arca-agent:0.1.0 .
FROM rust:1.90-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p arca-agent -p arca

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/arca-agent /usr/local/bin/arca-agent
COPY --from=build /src/target/release/arca /usr/local/bin/arca
COPY --from=build /src/target/release/arca /usr/local/bin/restic
# At most two malloc arenas (glibc allows eight per core): freed pack buffers are not stranded
# in many arenas, which keeps the agent inside a 128 MiB memory limit (docs/AGENT.md, "Memory").
ENV MALLOC_ARENA_MAX=2
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/arca-agent"]
