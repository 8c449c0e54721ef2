# The operator's image: arca-controller, plus the arca CLI (also installed as `restic`, so the
# seed's `kubectl exec ... -- restic -r <repository> snapshots | restore | check` commands run as
# written). Build from the repository root:
#   docker build -f deploy/images/controller.Dockerfile -t arca/arca-controller:0.1.0 .
FROM rust:1.90-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p arca-controller -p arca

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/arca-controller /usr/local/bin/arca-controller
COPY --from=build /src/target/release/arca /usr/local/bin/arca
COPY --from=build /src/target/release/arca /usr/local/bin/restic
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/arca-controller"]
