#!/usr/bin/env bash
# Builds the Portico .deb from a checkout: target/debian/portico_<version>-1_<arch>.deb (its
# path is the last line on stdout)
#
#   packaging/build-deb.sh            # needs a Rust toolchain (1.85+), dpkg-deb; installs cargo-deb if missing
#   DEB_PROFILE=dev DEB_BIN=path packaging/build-deb.sh --fast
#                                     # package an already built binary (the tests do this)
#
# Steps: the `dist` profile (fat LTO, one codegen unit; about 4 minutes on 2 cores), then the man pages and shell
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

profile="${DEB_PROFILE:-dist}"
target_dir="${CARGO_TARGET_DIR:-target}"
profile_dir="$profile"
[[ $profile == dev ]] && profile_dir=debug
bin="$target_dir/$profile_dir/portico"
if [[ -n ${DEB_BIN:-} ]]; then
  mkdir -p "$(dirname "$bin")"
  [[ $DEB_BIN -ef $bin ]] || cp "$DEB_BIN" "$bin"
else
  cargo build --locked --profile "$profile" --bin portico
fi
# Generated files go where [package.metadata.deb] assets expect them (relative to the checkout).
docs=target/portico-docs
rm -rf "$docs"
"$bin" __generate-docs --out "$docs"

# cargo-deb prints the path of the package it wrote as its last line.
deb=$(cargo deb --locked --profile "$profile" --no-build "$@" | tail -n 1)
echo "build-deb: built $deb" >&2
dpkg-deb --info "$deb" >&2
echo "$deb"
