# The disaster-recovery scenarios, by name: nixos-tests/<name>.nix and <name>.py. The one list
# the flake's checks (default.nix), the eval tests, the VM-test lint and tier 4 (scripts/vm-test)
# all read.
[
  "first-boot-restore"
  "wipe-restores"
  "incident-stacked-datasets"
  "dataset-not-mounted"
  "crash-mid-restore"
  "first-deploy"
  "repo-fallback"
]
