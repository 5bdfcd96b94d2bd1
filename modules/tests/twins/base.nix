# Twins of the plain NixOS options the module and the VM scenarios' nodes touch: the same types
# and defaults as nixpkgs (nixos-25.11), nothing more.
{
  lib,
  pkgs,
  ...
}: let
  inherit (lib) mkOption types;
  anything = mkOption {
    type = types.attrsOf types.anything;
    default = {};
  };
in {
  options = {
    assertions = mkOption {
      type = types.listOf types.unspecified;
      default = [];
    };
    warnings = mkOption {
      type = types.listOf types.str;
      default = [];
    };
    system.stateVersion = mkOption {
      type = types.str;
      default = "25.11";
    };
    # NixOS' fixed ids (nixos/modules/misc/ids.nix).
    ids = {
      uids = anything;
      gids = anything;
    };
    environment.etc = mkOption {
      type = types.attrsOf (types.submodule ({
        name,
        config,
        ...
      }: {
        options = {
          enable = mkOption {
            type = types.bool;
            default = true;
          };
          target = mkOption {
            type = types.str;
            default = name;
          };
          text = mkOption {
            type = types.nullOr types.lines;
            default = null;
          };
          source = mkOption {
            type = types.anything;
          };
          mode = mkOption {
            type = types.str;
            default = "symlink";
          };
          user = mkOption {
            type = types.str;
            default = "+0";
          };
          group = mkOption {
            type = types.str;
            default = "+0";
          };
        };
        # As NixOS: a `text` entry is a store file of that text.
        config.source = lib.mkIf (config.text != null) (pkgs.writeText "etc-${baseNameOf name}" config.text);
      }));
      default = {};
    };
    # Store paths the system needs that nothing else names (NixOS has the same option).
    system.extraDependencies = mkOption {
      type = types.listOf types.unspecified;
      default = [];
    };
    environment.systemPackages = mkOption {
      type = types.listOf types.package;
      default = [];
    };
    users.users = mkOption {
      type = types.attrsOf (types.submodule {freeformType = types.attrsOf types.anything;});
      default = {};
    };
    users.groups = mkOption {
      type = types.attrsOf (types.submodule {freeformType = types.attrsOf types.anything;});
      default = {};
    };
    fileSystems = mkOption {
      type = types.attrsOf (types.submodule ({name, ...}: {
        options = {
          mountPoint = mkOption {
            type = types.str;
            default = name;
          };
          device = mkOption {
            type = types.nullOr types.str;
            default = null;
          };
          label = mkOption {
            type = types.nullOr types.str;
            default = null;
          };
          fsType = mkOption {
            type = types.str;
            default = "auto";
          };
          options = mkOption {
            type = types.nonEmptyListOf types.str;
            default = ["defaults"];
          };
          neededForBoot = mkOption {
            type = types.bool;
            default = false;
          };
        };
      }));
      default = {};
    };
    # A list is coerced to { fs = true; } (nixos/modules/tasks/filesystems.nix).
    boot.supportedFilesystems = mkOption {
      type = types.coercedTo (types.listOf types.str) (enabled: lib.listToAttrs (map (fs: lib.nameValuePair fs true) enabled)) (types.attrsOf types.bool);
      default = {};
    };
    boot.initrd.supportedFilesystems = mkOption {
      type = types.coercedTo (types.listOf types.str) (enabled: lib.listToAttrs (map (fs: lib.nameValuePair fs true) enabled)) (types.attrsOf types.bool);
      default = {};
    };
    networking = anything;
  };

  config.ids = {
    uids.postgres = 71;
    gids.postgres = 71;
  };
}
