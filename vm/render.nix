# What vm/render-scenario reads: modules/tests/render.nix (what NixOS would write on each node of
# a VM scenario), plus the few facts about the same evaluation that render.nix does not return and
# that a booted node needs:
#   nodes.<n>.fileSystems  the node's fileSystems (after qemu-vm.nix's replacement), for /etc/fstab
#   nodes.<n>.zfs          boot.zfs.enabled (nixpkgs' zfs.nix then sets boot.kernelModules = ["zfs"],
#                          which the twin does not model)
#   nodes.<n>.systemPackages  store paths of environment.systemPackages (NixOS links them into
#                          /run/current-system/sw, which is on every shell's PATH)
#   guests                 every package of the twins' package set with the guest program it stands
#                          for, by store path: store paths that render.nix's `store` lacks but its
#                          files reference (a script's `#!…-bash/bin/bash`) are resolved from here
# Nothing here changes what render.nix says; vm/render-scenario fails on a store path that neither
# `store` nor `guests` knows.
#
#   nix-instantiate --eval --strict --json vm/render.nix --arg lib … --argstr name wipe-restores
{
  lib,
  name,
}: let
  support = import ../modules/tests/support.nix {inherit lib;};
  inherit (support) pkgs;
  base = import ../modules/tests/render.nix {inherit lib name;};
  tests = import ../nixos-tests {
    inherit pkgs;
    inherit (support) module;
  };
  test = let
    t = tests."vm-${name}";
  in
    if builtins.isFunction t
    then t {inherit pkgs;}
    else t;

  isStoreObject = x: builtins.isAttrs x && (x.type or null) == "derivation" && x ? outPath;
  guests = lib.listToAttrs (map (p:
    lib.nameValuePair p.outPath {
      inherit (p) name;
      guest = p.guest or null;
    }) (builtins.filter (p: isStoreObject p && (p.guest or null) != null) (builtins.attrValues pkgs)));

  extra = nodeModule: let
    c = support.evalNode nodeModule;
  in {
    fileSystems = lib.mapAttrs (_: fs: {inherit (fs) mountPoint device fsType options;}) c.fileSystems;
    zfs = c.boot.zfs.enabled;
    systemPackages = map (p: p.outPath) c.environment.systemPackages;
  };
in
  base
  // {
    inherit guests;
    nodes = lib.mapAttrs (n: node: node // extra test.nodes.${n}) base.nodes;
  }
