# The stand-ins the eval tests evaluate the module against: fake packages (nothing is built) and
# the smallest honest stubs of the NixOS options the module and the VM scenarios' nodes touch,
# typed the way NixOS types them (lists concatenate, attribute sets merge).
{lib}: let
  inherit (lib) mkOption types;
in rec {
  # A stand-in for a package: what the module reads of one (a store path, a version, the main
  # program). Nothing is built.
  fakePackage = name: version: {
    type = "derivation";
    inherit name version;
    pname = name;
    outPath = "/nix/store/00000000000000000000000000000000-${name}-${version}";
    meta.mainProgram = name;
    psqlSchema = lib.versions.major version;
  };

  # The part of pkgs the module (runCommand for the checked config, pgbackrest) and the VM
  # scenarios' nodes use.
  pkgs =
    {
      runCommand = name: env: script:
        fakePackage name "1"
        // {
          inherit env script;
        };
      writeText = name: text:
        fakePackage name "1"
        // {
          inherit text;
        };
      testers.runNixOSTest = test: test;
      inherit lib;
    }
    // lib.genAttrs ["openssl" "minio-client" "parted" "nfs-utils"] (name: fakePackage name "1")
    // {
      pgbackrest = fakePackage "pgbackrest" "2.55.1";
      postgresql_16 = fakePackage "postgresql" "16.9";
    };

  anything = types.anything;

  # NixOS' systemd option type: lists from several definitions concatenate (in mkBefore/mkAfter
  # order), other values must agree.
  unitOption = lib.mkOptionType {
    name = "systemd option";
    merge = loc: defs:
      if builtins.any (def: builtins.isList def.value) defs
      then lib.concatMap (def: lib.toList def.value) defs
      else lib.mergeEqualOption loc defs;
  };
  listOfAnything = mkOption {
    type = types.listOf anything;
    default = [];
  };

  # The NixOS options the module touches, typed like NixOS types them (lists concatenate,
  # attribute sets merge), with nothing behind them but one behaviour of nixpkgs' pgbackrest
  # module that the module's defaults depend on: with PostgreSQL enabled it always defines the
  # stanza `default` for the local instance.
  stubs = {config, ...}: {
    config.services.pgbackrest.stanzas = lib.mkIf (config.services.pgbackrest.enable && config.services.postgresql.enable) {
      default = {};
    };

    options = {
      assertions = listOfAnything;
      warnings = mkOption {
        type = types.listOf types.str;
        default = [];
      };
      environment.etc = mkOption {
        type = types.attrsOf (types.submodule {freeformType = types.attrsOf anything;});
        default = {};
      };
      environment.systemPackages = listOfAnything;
      systemd.tmpfiles.rules = mkOption {
        type = types.listOf types.str;
        default = [];
      };
      systemd.timers = mkOption {
        type = types.attrsOf (types.submodule {freeformType = types.attrsOf anything;});
        default = {};
      };
      systemd.services = mkOption {
        type = types.attrsOf (types.submodule {
          freeformType = types.attrsOf anything;
          options =
            lib.genAttrs ["wantedBy" "requiredBy" "requires" "wants" "after" "before" "conflicts" "partOf" "path"] (_: listOfAnything)
            // lib.genAttrs ["serviceConfig" "unitConfig" "environment"] (_:
              mkOption {
                type = types.attrsOf unitOption;
                default = {};
              });
        });
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
            options = listOfAnything;
          };
        }));
        default = {};
      };
      boot.supportedFilesystems = mkOption {
        type = types.either (types.listOf types.str) (types.attrsOf types.bool);
        default = [];
      };
      boot.zfs = mkOption {
        type = types.submodule {
          freeformType = types.attrsOf anything;
          options = {
            # Read-only in NixOS: whether ZFS is among the supported filesystems.
            enabled = mkOption {
              type = types.bool;
              default = let
                fs = config.boot.supportedFilesystems;
              in
                if builtins.isList fs
                then builtins.elem "zfs" fs
                else fs.zfs or false;
            };
            package = mkOption {
              type = anything;
              default = fakePackage "zfs" "2.3.4";
            };
          };
        };
        default = {};
      };
      # Set by the VM scenarios' nodes; nothing here reads them.
      virtualisation = mkOption {
        type = types.attrsOf anything;
        default = {};
      };
      networking = mkOption {
        type = types.attrsOf anything;
        default = {};
      };
      services.nfs = mkOption {
        type = types.attrsOf anything;
        default = {};
      };
      services.minio = mkOption {
        type = types.attrsOf anything;
        default = {};
      };
      services.postgresql = {
        enable = mkOption {
          type = types.bool;
          default = false;
        };
        package = mkOption {
          type = anything;
          default = fakePackage "postgresql" "16.4";
        };
        finalPackage = mkOption {
          type = anything;
          default = config.services.postgresql.package;
        };
        dataDir = mkOption {
          type = types.str;
          default = "/var/lib/postgresql/${config.services.postgresql.package.psqlSchema}";
        };
        settings = mkOption {
          type = types.attrsOf anything;
          default = {port = 5432;};
        };
      };
      services.pgbackrest = {
        enable = mkOption {
          type = types.bool;
          default = false;
        };
        repos = mkOption {
          type = types.attrsOf (types.attrsOf anything);
          default = {};
        };
        settings = mkOption {
          type = types.attrsOf anything;
          default = {};
        };
        stanzas = mkOption {
          type = types.attrsOf (types.attrsOf anything);
          default = {};
        };
      };
    };
  };

  # disko's option, for the tests of a configuration that imports disko.
  diskoStub = {
    options.disko.devices = mkOption {
      type = types.attrsOf anything;
      default = {};
    };
  };
}
