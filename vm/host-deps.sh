#!/usr/bin/env bash
# What tier 4 needs on the Debian bookworm host (as root): QEMU and qemu-img, debootstrap.
# qemu-system-x86 comes from bookworm-backports (10.0): these machines ship qemu-utils 10.0 from
# there, which refuses bookworm's own qemu-system 7.2. Nothing ZFS is installed on the host.
set -euo pipefail
needed=()
command -v qemu-system-x86_64 >/dev/null || needed+=(qemu-system-x86)
command -v qemu-img >/dev/null || needed+=(qemu-utils)
command -v debootstrap >/dev/null || needed+=(debootstrap)
((${#needed[@]})) || exit 0

export DEBIAN_FRONTEND=noninteractive
codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
if [[ $codename == bookworm ]] && ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  # The same archive as the machine's own Debian sources.
  uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [[ -n $uri ]] || uri=$(awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list)
  printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$uri" >/etc/apt/sources.list.d/bookworm-backports.sources
fi
echo "installing ${needed[*]}" >&2
apt-get update -qq
target=()
[[ $codename == bookworm ]] && target=(-t bookworm-backports)
apt-get install -y -qq --no-install-recommends "${target[@]}" "${needed[@]}" >/dev/null
