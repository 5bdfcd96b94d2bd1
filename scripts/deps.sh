# shellcheck shell=bash
# Installs the system packages pg-preseed's tests, demo and benchmarks use (Debian/Ubuntu, root).
# Sourced by scripts/test, scripts/demo and scripts/bench.

install_deps() {
  local packages=(postgresql postgresql-contrib pgbackrest zfs-fuse util-linux procps stunnel4 openssl)
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
  if ! cargo nextest --version >/dev/null 2>&1; then
    cargo install --locked cargo-nextest
  fi
  # The S3 server of the repo-fallback scenario (pgBackRest reaches it through stunnel's TLS).
  # 0.14.1: the newest release that builds with this machine's Rust.
  if ! command -v s3s-fs >/dev/null && [[ ! -x ${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs ]]; then
    cargo install --locked --quiet s3s-fs --version 0.14.1 --features binary
  fi
}

require_root() {
  if [[ $(id -u) -ne 0 ]]; then
    echo "$0: run as root (the tests mount filesystems, run zfs and start PostgreSQL as postgres)" >&2
    exit 2
  fi
}
