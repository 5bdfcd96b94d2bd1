# What NixOS would put on each node's disk for one VM scenario (nixos-tests/<name>.nix), as data
# tier 4 (vm/) materialises in a guest: the unit files of /etc/systemd/system (with their
# .wants/.requires links), environment.etc, the tmpfiles rules, users and groups, and every store
# object they reference (its files, the guest program a package stands for, or the builder a
# runCommand would have run). Everything comes from evaluating the scenario's nodes with the
# module and the nixpkgs twins, exactly as the eval tests do.
#
#   nix-instantiate --eval --strict --json modules/tests/render.nix --arg lib … --argstr name wipe-restores
{
  lib,
  name,
}: let
  support = import ./support.nix {inherit lib;};
  inherit (support) pkgs;
  tests = import ../../nixos-tests {
    inherit pkgs;
    inherit (support) module;
  };
  test = let
    t = tests."vm-${name}" or (throw "no scenario ${name} in nixos-tests/scenarios.nix");
  in
    if builtins.isFunction t
    then t {inherit pkgs;}
    else t;

  isStoreObject = x: builtins.isAttrs x && (x.type or null) == "derivation" && x ? outPath;
  storeEntry = o:
    {
      path = o.outPath;
      inherit (o) name;
      files = o.files or {};
      guest = o.guest or null;
    }
    // lib.optionalAttrs (o ? script) {
      runCommand = {
        inherit (o) script;
        env = lib.mapAttrs (_: v:
          if builtins.isList v
          then map toString v
          else toString v) (builtins.removeAttrs o.env ["nativeBuildInputs"]);
        tools = map (p: p.outPath) (o.env.nativeBuildInputs or []);
      };
    };

  render = nodeName: nodeModule: let
    c = support.evalNode nodeModule;
    failed = support.failed c;
    services = builtins.attrValues c.systemd.services;
    etc = lib.filterAttrs (_: e: e.enable) c.environment.etc;
    objects =
      c.environment.systemPackages
      ++ c.system.extraDependencies
      ++ lib.concatMap (s: s.jobScripts ++ builtins.filter isStoreObject s.path) services
      ++ builtins.filter isStoreObject (map (e: e.source) (builtins.attrValues etc))
      ++ builtins.concatLists (map (o: builtins.filter isStoreObject (o.env.nativeBuildInputs or [])) (builtins.filter (o: o ? env) (c.environment.systemPackages ++ map (e: e.source) (builtins.attrValues etc))));
    store = lib.listToAttrs (map (o: lib.nameValuePair o.outPath (storeEntry o)) (builtins.filter isStoreObject objects));
  in
    if failed != []
    then throw "node ${nodeName} of scenario ${name} has failing assertions: ${builtins.concatStringsSep "; " failed}"
    else {
      memorySize = c.virtualisation.memorySize;
      cores = c.virtualisation.cores;
      emptyDiskImages = c.virtualisation.emptyDiskImages;
      hostId = c.networking.hostId or null;
      # /etc/systemd/system/<file>: { text; } or { symlink; } (a link to a unit in the same
      # directory).
      units = c.systemd.rendered;
      # /etc/<target>: { source; } (a store path, linked) or { source; mode; user; group; }
      # (copied with that mode and owner, as NixOS does when mode is not "symlink").
      etc = lib.mapAttrs' (_: e:
        lib.nameValuePair e.target ({
            source = toString e.source;
          }
          // lib.optionalAttrs (e.mode != "symlink") {inherit (e) mode user group;}))
      etc;
      tmpfiles = lib.concatMapStrings (rule: "${rule}\n") c.systemd.tmpfiles.rules;
      users = lib.mapAttrs (n: u: {
        uid = u.uid or null;
        group = u.group or n;
        home = u.home or null;
        createHome = u.createHome or false;
        extraGroups = u.extraGroups or [];
      }) (lib.filterAttrs (_: u: u ? isSystemUser || u ? uid || u ? group) c.users.users);
      groups =
        lib.mapAttrs (_: g: {
          gid = g.gid or null;
          members = g.members or [];
        })
        c.users.groups;
      inherit store;
    };
in {
  inherit (test) name globalTimeout;
  nodes = lib.mapAttrs render test.nodes;
}
