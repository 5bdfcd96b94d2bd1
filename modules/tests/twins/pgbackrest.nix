# Twin of nixpkgs' services.pgbackrest (nixos/modules/services/backup/pgbackrest.nix,
# nixos-25.11): repositories numbered by attribute name (repo1 = first name in alphabetical
# order), a repository's `host` defaulting to its attribute name (unless it is "localhost" or
# not a posix repository), the stanza `default` for the local PostgreSQL, its archive_command,
# the pgbackrest user (home = repos.localhost.path, created at activation) and the rendered
# /etc/pgbackrest/pgbackrest.conf.
{
  config,
  lib,
  pkgs,
  ...
}: let
  inherit (lib) mkOption types;
  cfg = config.services.pgbackrest;
  pg = config.services.postgresql;

  settingsType = types.attrsOf (types.nullOr (types.oneOf [types.bool types.int types.str (types.listOf types.str) (types.attrsOf types.str)]));

  # `<prefix><n>-<key>` for every setting of every entry, n counted in attribute-name order.
  flattenWithIndex = attrs: prefix:
    lib.foldl' (acc: entry: acc // entry) {} (lib.imap1 (
      i: name:
        lib.mapAttrs' (key: value: lib.nameValuePair "${prefix}${toString i}-${key}" value)
        (lib.filterAttrs (_: v: v != null) attrs.${name})
    ) (builtins.attrNames attrs));

  # pgBackRest's ini: booleans y/n, attribute sets as key=value lists.
  normalize = lib.mapAttrs (_: v:
    if v == true
    then "y"
    else if v == false
    then "n"
    else if builtins.isAttrs v
    then lib.mapAttrsToList (k: x: "${k}=${x}") v
    else v);

  iniFile = (pkgs.formats.ini {listsAsDuplicateKeys = true;}).generate "pgbackrest.conf" (
    {global = normalize (lib.filterAttrs (_: v: v != null) (cfg.settings // flattenWithIndex cfg.repos "repo"));}
    // lib.mapAttrs' (command: settings: lib.nameValuePair "global:${command}" (normalize settings)) cfg.commands
    // lib.mapAttrs (_: stanza: normalize (lib.filterAttrs (_: v: v != null) (stanza.settings // flattenWithIndex stanza.instances "pg"))) cfg.stanzas
  );
in {
  options.services.pgbackrest = {
    enable = lib.mkEnableOption "pgBackRest";
    repos = mkOption {
      type = types.attrsOf (types.submodule ({
        name,
        config,
        ...
      }: {
        freeformType = settingsType;
        options = {
          type = mkOption {
            type = types.enum ["azure" "cifs" "gcs" "posix" "s3" "sftp"];
            default = "posix";
          };
          path = mkOption {
            type = types.nullOr types.str;
            default = null;
          };
          host = mkOption {
            type = types.nullOr types.str;
            default =
              if name == "localhost" || config.type != "posix"
              then null
              else name;
          };
        };
      }));
      default = {};
    };
    stanzas = mkOption {
      type = types.attrsOf (types.submodule {
        options = {
          instances = mkOption {
            type = types.attrsOf (types.submodule ({name, ...}: {
              freeformType = settingsType;
              options.host = mkOption {
                type = types.nullOr types.str;
                default =
                  if name == "localhost"
                  then null
                  else name;
              };
            }));
            default = {};
          };
          settings = mkOption {
            type = settingsType;
            default = {};
          };
          jobs = mkOption {
            type = types.attrsOf (types.attrsOf types.anything);
            default = {};
          };
        };
      });
      default = {};
    };
    settings = mkOption {
      type = settingsType;
      default = {};
    };
    commands = mkOption {
      type = types.attrsOf settingsType;
      default = {};
    };
  };

  config = lib.mkIf cfg.enable (lib.mkMerge [
    {
      services.pgbackrest.settings = {
        cmd-ssh = lib.getExe pkgs.openssh;
        log-level-console = lib.mkDefault "info";
        log-level-file = lib.mkDefault "off";
      };
      environment.etc."pgbackrest/pgbackrest.conf".source = iniFile;
      environment.systemPackages = [pkgs.pgbackrest];
      users.users.pgbackrest = {
        isSystemUser = true;
        group = "pgbackrest";
        home = cfg.repos.localhost.path or "/var/lib/pgbackrest";
        createHome = true;
      };
      users.groups.pgbackrest = {};
    }
    (lib.mkIf (pg.enable or false) {
      services.pgbackrest.stanzas.default = {
        instances.localhost = {
          path = pg.dataDir;
          user = "postgres";
        };
        settings.cmd = lib.getExe pkgs.pgbackrest;
      };
      services.pgbackrest.commands.restore.lock-path = "/tmp/postgresql";
      services.postgresql = {
        identMap = "postgres pgbackrest postgres";
        initdbArgs = ["--allow-group-access"];
        settings = {
          archive_command = ''${lib.getExe pkgs.pgbackrest} --stanza=default archive-push "%p"'';
          archive_mode = lib.mkDefault "on";
        };
      };
      users.groups.pgbackrest.members = ["postgres"];
      users.users.pgbackrest.extraGroups = ["postgres"];
    })
  ]);
}
