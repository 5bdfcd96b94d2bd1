# The disaster-recovery scenarios as NixOS VM tests, wired into the flake's checks as
# `vm-<name>`. Each has a twin of the same name in crates/pg-preseed/tests/it/scenarios.rs that runs
# the same story without VMs (tier 2). To watch one:
#   nix build .#checks.x86_64-linux.vm-wipe-restores.driverInteractive && ./result/bin/nixos-test-driver
{
  pkgs,
  module,
}: let
  common = import ./common.nix {inherit module;};
  names = import ./scenarios.nix;
  scenario = name: pkgs.testers.runNixOSTest (import (./. + "/${name}.nix") {inherit common;});
in
  pkgs.lib.listToAttrs (map (name: pkgs.lib.nameValuePair "vm-${name}" (scenario name)) names)
