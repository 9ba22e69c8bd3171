#!/usr/bin/env bash
# Builds the Portico .deb from a checkout: target/debian/portico_<version>-1_<arch>.deb
#
#   packaging/build-deb.sh            # needs a Rust toolchain (1.85+), dpkg-deb; installs cargo-deb if missing
#
# Steps: the `dist` profile (thin LTO; a few minutes on 2 cores), then the man pages and shell
# completions from the built binary's own clap definitions (portico __generate-docs), then
# cargo-deb with [package.metadata.deb] from Cargo.toml (it strips the binary, gzips the man
# pages, and adds the systemd maintainer-script snippets to packaging/deb/*).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION="^3.8"

if ! cargo deb --version >/dev/null 2>&1; then
  echo "build-deb: installing cargo-deb ($CARGO_DEB_VERSION) from crates.io" >&2
  cargo install --locked cargo-deb --version "$CARGO_DEB_VERSION"
fi
command -v dpkg-deb >/dev/null || { echo "build-deb: dpkg-deb is missing (apt install dpkg-dev)" >&2; exit 1; }

cargo build --locked --profile dist --bin portico

target_dir="${CARGO_TARGET_DIR:-target}"
bin="$target_dir/dist/portico"
# Generated files go where [package.metadata.deb] assets expect them (relative to the checkout).
docs=target/portico-docs
rm -rf "$docs"
"$bin" __generate-docs --out "$docs"

# cargo-deb prints the path of the package it wrote as its last line.
deb=$(cargo deb --locked --profile dist --no-build "$@" | tail -n 1)
echo "build-deb: built $deb" >&2
dpkg-deb --info "$deb" >&2
