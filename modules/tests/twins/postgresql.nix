# Twin of nixpkgs' services.postgresql (nixos/modules/services/databases/postgresql.nix,
# nixos-25.11): the options the module and the scenarios use, with nixpkgs' types and (absent)
# defaults, and the units it defines — postgresql.service (preStart runs initdb whenever
# PG_VERSION is missing; Type=notify; TimeoutSec=120; Restart=always; its hardening),
# postgresql-setup.service and postgresql.target — so the module's additions merge into them
# as they do on NixOS.
{
  config,
  lib,
  pkgs,
  ...
}: let
  inherit (lib) mkOption types;
  cfg = config.services.postgresql;

  # postgresql.conf: `name = value` per setting, nulls dropped; true/false are yes/no, strings
  # single-quoted (a quote doubled), numbers as they are.
  toValue = v:
    if v == true
    then "yes"
    else if v == false
    then "no"
    else if builtins.isString v
    then "'${builtins.replaceStrings ["'"] ["''"] v}'"
    else toString v;
  hbaFile = pkgs.writeText "pg_hba.conf" cfg.authentication;
  identFile = pkgs.writeText "pg_ident.conf" cfg.identMap;
  configFile = pkgs.writeTextDir "postgresql.conf" (lib.concatStrings (lib.mapAttrsToList (n: v: "${n} = ${toValue v}\n") (lib.filterAttrs (_: v: v != null) cfg.settings)));

  defaultDataDir = "/var/lib/postgresql/${cfg.package.psqlSchema}";
in {
  options.services.postgresql = {
    enable = lib.mkEnableOption "PostgreSQL Server";
    # No default: nixpkgs sets it (by system.stateVersion) only when PostgreSQL is enabled.
    package = mkOption {
      type = types.package;
    };
    finalPackage = mkOption {
      type = types.package;
      readOnly = true;
      default =
        if cfg.enableJIT
        then cfg.package.withJIT
        else cfg.package.withoutJIT;
    };
    # No default either: set only when PostgreSQL is enabled.
    dataDir = mkOption {
      type = types.path;
    };
    enableJIT = lib.mkEnableOption "JIT support";
    enableTCPIP = mkOption {
      type = types.bool;
      default = false;
    };
    superUser = mkOption {
      type = types.str;
      default = "postgres";
      internal = true;
    };
    initdbArgs = mkOption {
      type = types.listOf types.str;
      default = [];
    };
    authentication = mkOption {
      type = types.lines;
      default = "";
    };
    identMap = mkOption {
      type = types.lines;
      default = "";
    };
    initialScript = mkOption {
      type = types.nullOr types.path;
      default = null;
    };
    ensureDatabases = mkOption {
      type = types.listOf types.str;
      default = [];
    };
    settings = mkOption {
      type = types.submodule {
        freeformType = types.attrsOf (types.oneOf [types.bool types.float types.int types.str]);
        options = {
          port = mkOption {
            type = types.port;
            default = 5432;
          };
          log_line_prefix = mkOption {
            type = types.str;
            default = "[%p] ";
          };
          shared_preload_libraries = mkOption {
            type = types.nullOr (types.coercedTo (types.listOf types.str) (lib.concatStringsSep ",") types.str);
            default = null;
          };
        };
      };
      default = {};
    };
    systemCallFilter = mkOption {
      type = types.attrsOf types.bool;
      default = {};
    };
  };

  config = lib.mkIf cfg.enable {
    services.postgresql = {
      package = lib.mkDefault (
        if lib.versionAtLeast config.system.stateVersion "25.11"
        then pkgs.postgresql_17
        else pkgs.postgresql_16
      );
      dataDir = lib.mkDefault defaultDataDir;
      authentication = lib.mkMerge [
        (lib.mkBefore "# Generated file; do not edit!")
        (lib.mkAfter ''
          local all postgres peer map=postgres
          local all all peer
          host all all 127.0.0.1/32 md5
          host all all ::1/128 md5
        '')
      ];
      identMap = lib.mkAfter ''
        postgres postgres postgres
        postgres root postgres
      '';
      settings = {
        hba_file = "${hbaFile}";
        ident_file = "${identFile}";
        log_destination = "stderr";
        listen_addresses =
          if cfg.enableTCPIP
          then "*"
          else "localhost";
        jit = lib.mkDefault (
          if cfg.enableJIT
          then "on"
          else "off"
        );
      };
      systemCallFilter = lib.mkDefault {
        "@system-service" = true;
        "~@privileged" = true;
        "~@resources" = true;
      };
    };

    users.users.postgres = {
      name = "postgres";
      uid = config.ids.uids.postgres;
      group = "postgres";
      home = cfg.dataDir;
    };
    users.groups.postgres.gid = config.ids.gids.postgres;

    environment.systemPackages = [cfg.finalPackage];
    system.extraDependencies = [configFile hbaFile identFile];

    systemd.targets.postgresql = {
      description = "PostgreSQL";
      wantedBy = ["multi-user.target"];
      requires = ["postgresql.service" "postgresql-setup.service"];
    };

    systemd.services.postgresql = {
      description = "PostgreSQL Server";
      after = ["network.target"];
      wants = ["postgresql.target"];
      partOf = ["postgresql.target"];
      environment.PGDATA = cfg.dataDir;
      path = [cfg.finalPackage];
      # initdb whenever PG_VERSION is missing: the step pg-preseed's guards stand in front of.
      preStart = ''
        if ! test -e ${cfg.dataDir}/PG_VERSION; then
          rm -f ${cfg.dataDir}/*.conf
          initdb -U ${cfg.superUser} ${lib.escapeShellArgs cfg.initdbArgs}
          touch "${cfg.dataDir}/.first_startup"
        fi
        ln -sfn "${configFile}/postgresql.conf" "${cfg.dataDir}/postgresql.conf"
      '';
      serviceConfig = lib.mkMerge [
        {
          ExecStart = "${cfg.finalPackage}/bin/postgres";
          ExecReload = "${pkgs.coreutils}/bin/kill -HUP $MAINPID";
          Type = "notify";
          User = "postgres";
          Group = "postgres";
          RuntimeDirectory = "postgresql";
          KillSignal = "SIGINT";
          KillMode = "mixed";
          TimeoutSec = 120;
          Restart = "always";
          CapabilityBoundingSet = [""];
          DevicePolicy = "closed";
          PrivateTmp = true;
          ProtectHome = true;
          ProtectSystem = "strict";
          MemoryDenyWriteExecute = lib.mkDefault (cfg.settings.jit == "off");
          NoNewPrivileges = true;
          LockPersonality = true;
          PrivateDevices = true;
          PrivateMounts = true;
          ProcSubset = "pid";
          ProtectClock = true;
          ProtectControlGroups = true;
          ProtectHostname = true;
          ProtectKernelLogs = true;
          ProtectKernelModules = true;
          ProtectKernelTunables = true;
          ProtectProc = "invisible";
          RemoveIPC = true;
          RestrictAddressFamilies = ["AF_INET" "AF_INET6" "AF_NETLINK" "AF_UNIX"];
          RestrictNamespaces = true;
          RestrictRealtime = true;
          RestrictSUIDSGID = true;
          SystemCallArchitectures = "native";
          SystemCallFilter = lib.mapAttrsToList (n: _: n) (lib.filterAttrs (_: v: v) cfg.systemCallFilter);
          UMask = "0027";
        }
        (lib.mkIf (cfg.dataDir != defaultDataDir) {
          ReadWritePaths = [cfg.dataDir];
        })
        (lib.mkIf (cfg.dataDir == defaultDataDir) {
          StateDirectory = "postgresql postgresql/${cfg.package.psqlSchema}";
          StateDirectoryMode = "0750";
        })
      ];
      unitConfig = {
        RequiresMountsFor = "${cfg.dataDir}";
        StartLimitBurst = 5;
        StartLimitIntervalSec = 605;
      };
    };

    # Done once the server accepts connections and has left recovery.
    systemd.services.postgresql-setup = {
      description = "PostgreSQL Setup Scripts";
      requires = ["postgresql.service"];
      after = ["postgresql.service"];
      path = [cfg.finalPackage];
      environment.PGPORT = toString cfg.settings.port;
      serviceConfig = {
        User = "postgres";
        Group = "postgres";
        Type = "oneshot";
        RemainAfterExit = true;
      };
      script = ''
        while [ "$(psql -d postgres -tAc 'SELECT pg_is_in_recovery()' 2>/dev/null)" != f ]; do
          if ! systemctl is-active --quiet postgresql.service; then exit 1; fi
          sleep 0.1
        done
        if test -e "${cfg.dataDir}/.first_startup"; then
          ${lib.optionalString (cfg.initialScript != null) ''psql -f "${cfg.initialScript}" -d postgres''}
          rm -f "${cfg.dataDir}/.first_startup"
        fi
        ${lib.concatMapStrings (db: ''
            psql -tAc "SELECT 1 FROM pg_database WHERE datname = '${db}'" | grep -q 1 || psql -tAc 'CREATE DATABASE "${db}"'
          '')
          cfg.ensureDatabases}
      '';
    };
  };
}
