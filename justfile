# Spinneret's tasks. `just --list` shows them; each is a thin wrapper.

set shell := ["bash", "-euo", "pipefail", "-c"]

target := env("CARGO_TARGET_DIR", justfile_directory() / "target")
guests := "link wandering stamp-headers page-title seed-list fixture-tagged fixture-trap fixture-spin fixture-hog fixture-wrong-world fixture-link-v2 fixture-snoop fixture-leak"

# List the recipes.
default:
    @just --list

# Build every guest into plugins/*.wasm (spiders, example plugins) and tests/fixtures/ (negative fixtures).
guests:
    #!/usr/bin/env bash
    set -euo pipefail
    export CARGO_TARGET_DIR={{target}}
    cd spiders
    mkdir -p ../tests/fixtures/wasm
    # One build per guest: each embeds exactly its own world.
    for g in {{guests}}; do
      cargo build --quiet --release --target wasm32-wasip2 -p "$g"
    done
    out={{target}}/wasm32-wasip2/release
    for g in link wandering stamp-headers page-title seed-list; do
      cp "$out/${g//-/_}.wasm" ../plugins/$g.wasm
    done
    for g in tagged trap spin hog link-v2 snoop leak; do
      cp "$out/fixture_${g//-/_}.wasm" ../tests/fixtures/wasm/$g.wasm
    done
    cp "$out/fixture-wrong-world.wasm" ../tests/fixtures/wasm/wrong-world.wasm
    # Python spiders (componentize-py, ~5 s each): rebuilt only when their
    # sources, the SDK or the WIT changed.
    cpy="${SPINNERET_TOOLS:-$HOME/.cache/spinneret/tools}/py/bin/componentize-py"
    for dir in python/*/; do
      name=$(basename "$dir")
      [ "$name" = sdk ] && continue
      wasm=../plugins/py-$name.wasm
      if [ ! -f "$wasm" ] || [ -n "$(find "$dir" python/sdk ../wit -newer "$wasm" -type f -not -path '*/__pycache__/*' | head -1)" ]; then
        "$cpy" -d ../wit -w spider componentize -p python/sdk -p "$dir" app -o "$wasm" >/dev/null
      fi
    done
    # JavaScript spiders (componentize-js, ~9 s each), the same way. Each
    # gets a generated entry module that turns its `parse` into the
    # `parser` export; componentize-js reads files under the current
    # directory only, so it runs from the repository root.
    cjs="${SPINNERET_TOOLS:-$HOME/.cache/spinneret/tools}/js/node_modules/.bin/componentize-js"
    mkdir -p js/.build
    js() { # source dir under spiders/, output under the repository root
      local dir=$1 out=$2 entry=js/.build/${1//\//-}.js
      if [ ! -f "../$out" ] || [ -n "$(find "$dir" js/sdk ../wit -newer "../$out" -type f | head -1)" ]; then
        printf "import { parse } from '../../%s/app.js';\nimport { parser as wrap } from '../sdk/spinneret.js';\nexport const parser = wrap(parse);\n" "$dir" > "$entry"
        (cd .. && "$cjs" "spiders/$entry" -w wit -n spider -d http fetch-event -o "$out" >/dev/null)
      fi
    }
    for dir in js/*/; do
      name=$(basename "$dir")
      case "$name" in sdk|fixtures) continue ;; esac
      js "js/$name" "plugins/js-$name.wasm"
    done
    for dir in js/fixtures/*/; do
      js "js/fixtures/$(basename "$dir")" "tests/fixtures/wasm/js-$(basename "$dir").wasm"
    done
    echo "guests: $(ls ../plugins/*.wasm | wc -l) plugins, $(ls ../tests/fixtures/wasm/*.wasm | wc -l) fixtures" >&2

# Build the host binaries (release).
build:
    cargo build --release --bins

# Crawl the local test site with the link spider at depth 2 and print a summary.
demo: guests build
    {{target}}/release/spinneret-demo

# Run the whole test suite: unit tests, then black-box integration tests.
test: guests build
    cargo test --release --workspace

# Formatting and lints for the host and the guests.
lint:
    cargo fmt --all --check
    cargo clippy --release --all-targets --workspace -- -D warnings
    cd spiders && cargo fmt --all --check && cargo clippy --release --target wasm32-wasip2 --workspace -- -D warnings

# Benchmarks: crawl throughput, CPU and memory on a 20,000-page site; link extraction.
bench: guests build
    {{target}}/release/spinneret-bench

# Everything CI runs.
ci: lint test
