# Spinneret's tasks. `just --list` shows them; each is a thin wrapper.

set shell := ["bash", "-euo", "pipefail", "-c"]

target := env("CARGO_TARGET_DIR", justfile_directory() / "target")

# List the recipes.
default:
    @just --list

# Build every guest (Rust, Python, JavaScript) into plugins/*.wasm, test fixtures into tests/fixtures/wasm/; or only the plugins named.
guests *names:
    CARGO_TARGET_DIR={{target}} scripts/guests {{names}}

# Create a working spider from a template: `just new-spider NAME --lang rust|python|js`.
new-spider name *args:
    scripts/new-spider {{name}} {{args}}

# Build the host binaries (release).
build:
    cargo build --release --bins

# Crawl the local test site with the link spider at depth 2 and print a summary.
demo: (guests "link") build
    {{target}}/release/spinneret-demo

# Run the whole test suite: unit tests, then black-box integration tests.
# Every guest is compiled into the tests' shared cache first (tests/all/
# harness.rs), so no test waits on a cold compile while the others run.
test: guests build
    XDG_CACHE_HOME="${SPINNERET_TEST_CACHE:-${TMPDIR:-/tmp}/spinneret-test-cache}" {{target}}/release/spinneret plugins --plugins plugins >/dev/null
    # Some fixtures are invalid on purpose: they are rejected, the rest cached.
    -XDG_CACHE_HOME="${SPINNERET_TEST_CACHE:-${TMPDIR:-/tmp}/spinneret-test-cache}" {{target}}/release/spinneret plugins --plugins tests/fixtures/wasm >/dev/null 2>&1
    XDG_CACHE_HOME="${SPINNERET_TEST_CACHE:-${TMPDIR:-/tmp}/spinneret-test-cache}" {{target}}/release/spinneret plugins --plugins tests/fixtures/frozen >/dev/null
    cargo test --release --workspace

# Formatting and lints for the host and the guests; no import cycles between the host's modules.
lint:
    cargo fmt --all --check
    cargo clippy --release --all-targets --workspace -- -D warnings
    scripts/lint-cycles
    cd spiders && cargo fmt --all --check && cargo clippy --release --target wasm32-wasip2 --workspace -- -D warnings

# Benchmarks: crawl throughput, CPU and memory on a 20,000-page site, side by side with spider-rs; link extraction.
# `just bench --against OLD_BINARY` sets this build beside another one.
bench *ARGS: guests build
    CARGO_TARGET_DIR={{target}} cargo build --release --manifest-path bench/peer-spider/Cargo.toml
    {{target}}/release/spinneret-bench {{ARGS}}

# Everything CI runs.
ci: lint test
