#!/usr/bin/env bash
# Builds the tier-4 guest image into OUT (a directory that must not exist yet):
#   rootfs.img   ext4 root filesystem (Debian trixie, systemd, OpenZFS 2.3 built by DKMS for the
#                guest kernel, PostgreSQL 17, pgBackRest, NFS; packages.txt lists them)
#   vmlinuz, initrd.img   the guest kernel and its initramfs (with the vm-tree hook, see files/)
#   manifest.txt  versions and the units left enabled;  build.log  everything the build printed
# Needs root and the package archive; installs nothing on the host except debootstrap.
# scripts/vm-test calls this through vm/vmtest/image.py, which caches OUT by a hash of this
# directory and holds a lock while it builds: run it by hand only to debug the build.
set -euo pipefail

if [[ -z ${VM_IMAGE_NAMESPACE:-} ]]; then
  # A private mount namespace: the chroot's /proc, /sys and /dev mounts vanish with it, whatever
  # way the build ends.
  VM_IMAGE_NAMESPACE=1 exec unshare --mount --propagation private -- "$0" "$@"
fi

here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build.sh OUT}
if [[ -e $out ]]; then
  echo "build.sh: $out already exists" >&2
  exit 2
fi
mkdir -p "$out"
root=$out/root
started=$SECONDS
step() { printf '[%4ds] %s\n' $((SECONDS - started)) "$*" >&2; }
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
  DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@"; }

command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2

step "debootstrap trixie (minbase, main + contrib)"
debootstrap --variant=minbase --components=main,contrib trixie "$root" >"$out/debootstrap.log" 2>&1 ||
  { tail -20 "$out/debootstrap.log" >&2; exit 1; }

mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount --rbind /dev "$root/dev"
cp /etc/resolv.conf "$root/etc/resolv.conf"

# No service starts inside the chroot while packages install.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
# Documentation, man pages and translations are never read in a test guest.
cat >"$root/etc/dpkg/dpkg.cfg.d/01-vm-test-nodoc" <<'EOF'
path-exclude=/usr/share/doc/*
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
EOF

# NixOS' fixed ids for the postgres user and group (ids.uids.postgres = 71): files the scenarios
# create by number (the NFS export's repository directory) belong to the same user as on NixOS.
# Created before postgresql-common, which then keeps them.
in_root groupadd --system --gid 71 postgres
in_root useradd --system --uid 71 --gid 71 --home-dir /var/lib/postgresql --no-create-home \
  --shell /bin/bash --comment "PostgreSQL administrator" postgres

# The image's own files (initramfs hook and config, backdoor and network units, createcluster
# override) go in first, so the packages' maintainer scripts already see them.
cp -a "$here/files/." "$root/"

step "apt-get install ($(grep -cv '^\s*\(#\|$\)' "$here/packages.txt") packages, DKMS builds zfs.ko)"
mapfile -t packages < <(grep -v '^\s*\(#\|$\)' "$here/packages.txt")
{
  in_root apt-get update
  in_root apt-get install -y --no-install-recommends -o Dpkg::Options::=--force-confold "${packages[@]}"
} >"$out/apt.log" 2>&1 || { tail -40 "$out/apt.log" >&2; exit 1; }

kernel=$(basename "$(ls -d "$root"/lib/modules/*)")
zfs_ko=$(find "$root/lib/modules/$kernel" -name 'zfs.ko*' | head -1)
if [[ -z $zfs_ko ]]; then
  echo "build.sh: DKMS built no zfs.ko for the guest kernel $kernel (see $out/apt.log)" >&2
  exit 1
fi
if [[ -n $(ls -A "$root/etc/postgresql" 2>/dev/null) ]]; then
  echo "build.sh: the postgresql package created a cluster: $(ls "$root/etc/postgresql")" >&2
  exit 1
fi

step "units: disable what the scenario's NixOS configuration decides about"
# Each node's tree enables what its NixOS configuration has: PostgreSQL, the NFS server, the ZFS
# import/mount units (phase 2 renders NixOS' own), so none of Debian's start by themselves.
# Timers that would wake a TCG guest for housekeeping go too.
disable=(
  postgresql.service
  nfs-server.service nfs-blkmap.service
  zfs-import-cache.service zfs-import-scan.service zfs-mount.service zfs-share.service
  zfs-zed.service zfs-volume-wait.service zfs-load-module.service
  zfs-import.target zfs-volumes.target zfs.target
  dkms.service
  apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer fstrim.timer
  e2scrub_all.timer e2scrub_reap.service
)
for unit in "${disable[@]}"; do
  if [[ -n $(in_root systemctl list-unit-files --no-legend "$unit" 2>/dev/null) ]]; then
    in_root systemctl disable "$unit" >/dev/null 2>&1
  fi
done
# The serial port belongs to the driver (the node's serial log), as in NixOS test VMs.
ln -sf /dev/null "$root/etc/systemd/system/serial-getty@ttyS0.service"
# /tmp on the root filesystem, as on NixOS (boot.tmp.useTmpfs defaults to false); trixie would
# mount a tmpfs there.
ln -sf /dev/null "$root/etc/systemd/system/tmp.mount"
in_root systemctl enable backdoor.service vm-network.service >/dev/null 2>&1

# Root on the first virtio disk, as in NixOS test VMs. No fsck pass: the ext4 journal is replayed
# by the mount after a power cut.
echo "/dev/vda / ext4 rw 0 0" >"$root/etc/fstab"
echo "localhost" >"$root/etc/hostname"
printf '127.0.0.1 localhost\n::1 localhost\n' >"$root/etc/hosts"

step "initramfs"
in_root update-initramfs -u -k all >"$out/initramfs.log" 2>&1 || { tail -20 "$out/initramfs.log" >&2; exit 1; }
cp "$root/boot/vmlinuz-$kernel" "$out/vmlinuz"
cp "$root/boot/initrd.img-$kernel" "$out/initrd.img"

{
  echo "kernel $kernel"
  in_root dpkg-query -W -f '${Package} ${Version}\n' systemd zfsutils-linux zfs-dkms postgresql-17 \
    pgbackrest nfs-kernel-server
  echo "enabled units:"
  in_root systemctl list-unit-files --state=enabled --no-legend | awk '{print "  " $1}'
} >"$out/manifest.txt"

step "clean up the root"
in_root apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/debconf/*-old "$root/usr/sbin/policy-rc.d"
: >"$root/etc/resolv.conf"
# Every node gets its own machine-id through its tree.
: >"$root/etc/machine-id"
umount -R "$root/dev" "$root/sys" "$root/proc"
# What systemd-update-done would write at the first boot: without them every node's first boot
# runs ldconfig, the journal catalog update and friends (ConditionNeedsUpdate), seconds under TCG.
touch "$root/etc/.updated" "$root/var/.updated"

step "mke2fs -d"
used_mib=$(du -sm "$root" | cut -f1)
# Room for what the scenarios write to the root filesystem (the repository host's backups).
size_mib=$(((used_mib + 3072 + 255) / 256 * 256))
truncate -s "${size_mib}M" "$out/rootfs.img"
mke2fs -q -t ext4 -L vm-root -d "$root" "$out/rootfs.img"
rm -rf "$root"
echo "rootfs ${used_mib} MiB used of ${size_mib} MiB; built in $((SECONDS - started)) s" >>"$out/manifest.txt"
step "done: $(tail -1 "$out/manifest.txt")"
