# shellcheck shell=bash
# What pg-preseed's demo, tests and benchmarks need on Debian/Ubuntu (as root). Sourced by the
# scripts next to it.

# System packages: PostgreSQL, pgBackRest, zfs-fuse (real `zpool`/`zfs` without a kernel
# module), util-linux (runuser, mount), stunnel and openssl (TLS for the S3 test server), jq.
install_packages() {
  local packages=(postgresql postgresql-contrib pgbackrest zfs-fuse util-linux procps stunnel4 openssl jq)
  local missing=()
  for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  if ((${#missing[@]})); then
    echo "installing: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
      { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
  fi
}

# Test tools from the crate registry, built once (minutes): cargo-nextest (the test runner) and
# s3s-fs (the S3 server of the repo-fallback scenario). Pinned, so that a new release cannot raise
# the Rust the tests need (README): cargo-nextest 0.9.143 needs Rust 1.91, s3s-fs 0.14.1 needs
# 1.92 (their manifests' rust-version); pg-preseed itself builds with 1.85.
install_test_tools() {
  if ! cargo nextest --version >/dev/null 2>&1; then
    cargo install --locked cargo-nextest --version 0.9.143
  fi
  if ! command -v s3s-fs >/dev/null && [[ ! -x ${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs ]]; then
    echo "installing s3s-fs (a few minutes, once)" >&2
    cargo install --locked --quiet s3s-fs --version 0.14.1 --features binary
  fi
}

require_root() {
  if [[ $(id -u) -ne 0 ]]; then
    echo "$0: run as root (it mounts filesystems, runs zfs and starts PostgreSQL as postgres)" >&2
    exit 2
  fi
  if ! command -v cargo >/dev/null; then
    echo "$0: needs Rust >= 1.85 with cargo (https://rustup.rs)" >&2
    exit 2
  fi
}
