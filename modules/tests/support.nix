# What the eval tests, the options reference and tier 4 share: the module evaluated against the
# twins of the nixpkgs modules it meets (./twins), the way NixOS evaluates it.
{lib}: let
  twins = import ./twins {inherit lib;};
in rec {
  inherit (twins) pkgs;

  # pg-preseed stand-ins (two versions, for the tests of what an update changes).
  pgPreseed = version:
    pkgs.storeObject {
      name = "pg-preseed";
      inherit version;
      guest = "pg-preseed";
    };

  # The module as the flake exports it: the package set by default.
  module = {
    imports = [../postgresql-preseed.nix];
    services.postgresql-preseed.package = lib.mkDefault (pgPreseed "0.1.0");
  };

  # A NixOS configuration: the twins, the module, and `modules`.
  evalSystem = {
    modules,
    extraTwins ? [],
    specialArgs ? {},
  }:
    (lib.evalModules {
      modules = twins.modules ++ extraTwins ++ [module] ++ modules;
      specialArgs = {inherit pkgs;} // specialArgs;
    })
    .config;

  # A VM scenario's node: also the qemu-vm.nix twin (fileSystems replaced in test VMs).
  evalNode = node:
    (lib.evalModules {
      modules = twins.modules ++ [./twins/qemu-vm.nix node];
      specialArgs = {inherit pkgs;};
    })
    .config;

  # disko's option, for the tests of a configuration that imports disko.
  diskoStub = {
    options.disko.devices = lib.mkOption {
      type = lib.types.attrsOf lib.types.anything;
      default = {};
    };
  };

  failed = config: map (a: a.message) (builtins.filter (a: !a.assertion) config.assertions);
}
