# services.postgresql-preseed: the units that stand between the pools' mounts and
# postgresql.service, and the JSON config they share.
{
  config,
  lib,
  pkgs,
  options,
  ...
}: let
  cfg = config.services.postgresql-preseed;
  pg = config.services.postgresql;
  helpers = import ./lib.nix {inherit lib;};

  pgPackage = pg.finalPackage or pg.package;
  major = helpers.pgMajor pg;
  markerDir = dirOf cfg.markerFile;
  repoNames =
    if config.services.pgbackrest.enable or false
    then builtins.attrNames (config.services.pgbackrest.repos or {})
    else [];
  zfsEnabled = lib.attrByPath ["boot" "zfs" "enabled"] false config;
  exe = lib.getExe cfg.package;
  configPath = "/etc/pg-preseed/config.json";

  settings = {
    pgdata = cfg.dataDir;
    marker = cfg.markerFile;
    postgres = {
      bin_dir = "${pgPackage}/bin";
      major = lib.toInt major;
      user = "postgres";
      port = pg.settings.port or 5432;
      socket_dir = "/run/postgresql";
    };
    inherit (cfg) mode;
    require_mount = cfg.requireMount;
    on_layering = cfg.onLayering;
    on_no_backup = cfg.onNoBackup;
    pgbackrest = {
      inherit (cfg.pgbackrest) stanza set;
      repos = map (helpers.repoEntry repoNames) cfg.pgbackrest.repos;
      target = {inherit (cfg.pgbackrest.target) type value;};
      process_max = cfg.pgbackrest.processMax;
      config = cfg.pgbackrest.configFile;
      bin = lib.getExe cfg.pgbackrest.package;
      max_backup_age = cfg.pgbackrest.maxBackupAge;
      repo_wait = cfg.pgbackrest.repoWait;
    };
    verify = {
      sql =
        map (
          check:
            if builtins.isString check
            then check
            else lib.filterAttrs (_: v: v != null) check
        )
        cfg.verify.sql;
      inherit (cfg.verify) database timeout;
    };
    datasets =
      lib.mapAttrsToList (name: d: {
        inherit name;
        inherit (d) mountpoint properties;
      })
      cfg.datasets;
    metrics =
      if cfg.metrics.textfile == null
      then null
      else {inherit (cfg.metrics) textfile;};
  };

  # Built with `pg-preseed check-config`: a bad config fails nixos-rebuild, not the boot.
  configFile =
    pkgs.runCommand "pg-preseed-config.json" {
      nativeBuildInputs = [cfg.package];
      json = builtins.toJSON settings;
      passAsFile = ["json"];
      preferLocalBuild = true;
    } ''
      cp "$jsonPath" "$out"
      pg-preseed check-config "$out"
    '';

  claims = helpers.claims {
    inherit (cfg) datasets;
    fileSystems = config.fileSystems or {};
    disko =
      if options ? disko
      then config.disko.devices or null
      else null;
  };

  # What every unit of ours shares: the engine needs little, and gets no more.
  hardening = {
    NoNewPrivileges = true;
    PrivateTmp = true;
    ProtectHome = true;
    ProtectSystem = "strict";
    ProtectKernelTunables = true;
    ProtectKernelModules = true;
    ProtectKernelLogs = true;
    ProtectControlGroups = true;
    ProtectClock = true;
    ProtectHostname = true;
    LockPersonality = true;
    MemoryDenyWriteExecute = true;
    RestrictNamespaces = true;
    RestrictRealtime = true;
    RestrictSUIDSGID = true;
    RemoveIPC = true;
    SystemCallArchitectures = "native";
    SystemCallFilter = ["@system-service" "~@privileged" "~@resources"];
    RestrictAddressFamilies = ["AF_UNIX" "AF_INET" "AF_INET6" "AF_NETLINK"];
    # `zfs list` needs /dev/zfs, nothing else from /dev.
    DevicePolicy = "closed";
    DeviceAllow = lib.optional zfsEnabled "/dev/zfs rw";
    UMask = "0022";
  };

  # The units that run as the PostgreSQL user.
  asPostgres =
    hardening
    // {
      User = "postgres";
      Group = "postgres";
      CapabilityBoundingSet = [""];
    };

  # The preflight, restore and verify units: oneshot, as postgres, "active (exited)" once done.
  oneshotAsPostgres =
    asPostgres
    // {
      Type = "oneshot";
      RemainAfterExit = true;
    };

  writablePaths =
    [markerDir]
    ++ lib.optional (cfg.metrics.textfile != null) "-${dirOf cfg.metrics.textfile}";

  unitPath = lib.optional zfsEnabled config.boot.zfs.package;

  # Repository credentials reach pgBackRest only through the environment.
  environmentFiles = lib.optional (cfg.pgbackrest.environmentFile != null) (toString cfg.pgbackrest.environmentFile);

  # The units' order at boot: pools imported and mounted, then our checks, then PostgreSQL.
  mountsReady = [
    "local-fs.target"
    "remote-fs.target"
    "zfs-mount.service"
    "systemd-tmpfiles-setup.service"
  ];

  hasDatasets = cfg.datasets != {};
in {
  imports = [./options.nix];

  config = lib.mkIf cfg.enable {
    services.postgresql-preseed = {
      inherit settings configFile;
    };

    assertions =
      [
        {
          assertion = pg.enable or false;
          message = "services.postgresql-preseed guards services.postgresql: set services.postgresql.enable = true.";
        }
        {
          assertion = helpers.stripSlash cfg.dataDir == helpers.stripSlash (pg.dataDir or cfg.dataDir);
          message = "services.postgresql-preseed.dataDir (${cfg.dataDir}) must be services.postgresql.dataDir (${pg.dataDir or "unset"}): the guard must stand in front of the directory PostgreSQL uses. Leave services.postgresql-preseed.dataDir at its default.";
        }
        {
          assertion = !(lib.hasPrefix "${helpers.stripSlash cfg.dataDir}/" cfg.markerFile);
          message = "services.postgresql-preseed.markerFile (${cfg.markerFile}) is inside dataDir (${cfg.dataDir}); a marker there is emptied with PGDATA or survives on a hidden dataset. Leave markerFile at its default (/var/lib/postgresql-preseed/${major}/receipt.json) or put it on another filesystem.";
        }
        {
          assertion = cfg.pgbackrest.stanza != null;
          message = "services.postgresql-preseed.pgbackrest.stanza is not set${lib.optionalString (repoNames != [] || (config.services.pgbackrest.enable or false)) " and services.pgbackrest defines ${toString (builtins.length (builtins.attrNames (config.services.pgbackrest.stanzas or {})))} stanzas (${lib.concatStringsSep ", " (builtins.attrNames (config.services.pgbackrest.stanzas or {}))})"}: set it to the stanza to restore, e.g. services.postgresql-preseed.pgbackrest.stanza = \"default\".";
        }
        {
          assertion = cfg.pgbackrest.repos != [];
          message = "services.pgbackrest defines several repositories (${lib.concatStringsSep ", " repoNames}); say in which order to try them: services.postgresql-preseed.pgbackrest.repos = [ ${lib.concatMapStringsSep " " (n: "\"${n}\"") repoNames} ]; (services.pgbackrest numbers them alphabetically: ${lib.concatStringsSep ", " (lib.imap1 (i: n: "repo${toString i} = ${n}") repoNames)}).";
        }
        {
          assertion = helpers.unknownRepoNames repoNames cfg.pgbackrest.repos == [];
          message = "services.postgresql-preseed.pgbackrest.repos names ${lib.concatStringsSep ", " (helpers.unknownRepoNames repoNames cfg.pgbackrest.repos)}, which services.pgbackrest.repos does not define (it defines: ${
            if repoNames == []
            then "none${lib.optionalString (!(config.services.pgbackrest.enable or false)) "; services.pgbackrest is not enabled, so use repository numbers"}"
            else lib.concatStringsSep ", " repoNames
          }).";
        }
        {
          assertion = cfg.pgbackrest.target.type == "default" || cfg.pgbackrest.target.type == "immediate" || cfg.pgbackrest.target.value != null;
          message = "services.postgresql-preseed.pgbackrest.target.type = \"${cfg.pgbackrest.target.type}\" needs target.value.";
        }
        {
          assertion = cfg.requireMount == null || cfg.requireMount.dataset != null || cfg.requireMount.fstype != null;
          message = "services.postgresql-preseed.requireMount needs dataset or fstype (or set it to null).";
        }
      ]
      ++ map (conflict: {
        assertion = false;
        message = helpers.conflictMessage conflict;
      }) (helpers.conflicts claims);

    environment.etc."pg-preseed/config.json".source = configFile;
    environment.systemPackages = [cfg.package];

    systemd.timers.postgresql-preseed-drill = lib.mkIf cfg.drill.enable {
      description = "Scheduled restore drill (pg-preseed)";
      wantedBy = ["timers.target"];
      timerConfig = {
        OnCalendar = cfg.drill.schedule;
        Persistent = true;
        RandomizedDelaySec = "1h";
      };
    };

    systemd.tmpfiles.rules =
      lib.optional cfg.drill.enable "d ${cfg.drill.scratchDir} 0750 postgres postgres - -"
      ++ [
        "d ${markerDir} 0755 postgres postgres - -"
        # PGDATA belongs to postgres before the restore unit (running as postgres) looks at it: a
        # freshly created dataset's root is root's. Mode untouched ("-"): pgBackRest and initdb set
        # it. (nixpkgs' StateDirectory does this too, but only when postgresql.service starts.)
        "d ${cfg.dataDir} - postgres postgres - -"
      ];

    systemd.services = {
      postgresql-preseed-datasets = lib.mkIf hasDatasets {
        description = "Reconcile the ZFS datasets declared for PostgreSQL (pg-preseed)";
        # Runs between pool import and mounting, so new datasets are mounted in order and a
        # leftover one on PGDATA's mountpoint is refused before anything mounts.
        unitConfig.DefaultDependencies = false;
        wantedBy = ["zfs-mount.service"];
        requiredBy = ["postgresql-preseed-preflight.service"];
        after = ["zfs-import.target" "systemd-udev-settle.service"];
        before = ["zfs-mount.service" "local-fs.target" "postgresql-preseed-preflight.service" "shutdown.target"];
        conflicts = ["shutdown.target"];
        path = unitPath;
        serviceConfig =
          hardening
          // {
            Type = "oneshot";
            RemainAfterExit = true;
            # zfs create/set are privileged ioctls on /dev/zfs.
            CapabilityBoundingSet = ["CAP_SYS_ADMIN"];
            SystemCallFilter = ["@system-service" "~@resources"];
            ExecStart = "${exe} --config ${configPath} datasets ensure";
          };
      };

      postgresql-preseed-preflight = {
        description = "Check PostgreSQL's mounts, datasets and marker before it starts (pg-preseed)";
        wantedBy = ["multi-user.target"];
        requiredBy = ["postgresql.service"];
        # Stopped and restarted with PostgreSQL, so `systemctl start postgresql` after a stop
        # runs the checks again instead of finding them still "active (exited)" from boot.
        partOf = ["postgresql.service"];
        requires = lib.optional hasDatasets "postgresql-preseed-datasets.service";
        after = mountsReady ++ lib.optional hasDatasets "postgresql-preseed-datasets.service";
        before = ["postgresql.service" "postgresql-preseed.service"];
        unitConfig.RequiresMountsFor = [cfg.dataDir markerDir];
        path = unitPath;
        serviceConfig =
          oneshotAsPostgres
          // {
            ReadWritePaths = writablePaths;
            ExecStart = "${exe} --config ${configPath} preflight";
          };
      };

      postgresql-preseed = {
        description = "Restore PostgreSQL from pgBackRest when its data directory is empty (pg-preseed)";
        wantedBy = ["multi-user.target"];
        requiredBy = ["postgresql.service"];
        # Without this the unit would stay "active (exited)" from boot, and a drill's
        # `systemctl stop postgresql; <empty PGDATA>; systemctl start postgresql` would skip the
        # restore and let nixpkgs' initdb create an empty cluster. With it, every start of
        # PostgreSQL re-evaluates the condition below and restores when PGDATA is empty.
        partOf = ["postgresql.service"];
        requires = ["postgresql-preseed-preflight.service"];
        wants = ["network-online.target"];
        after = mountsReady ++ ["postgresql-preseed-preflight.service" "network-online.target"];
        before = ["postgresql.service"];
        unitConfig = {
          RequiresMountsFor = [cfg.dataDir markerDir];
          # Skipped, without running anything, on a boot where PGDATA holds a cluster. It still
          # runs when pgBackRest's manifest shows a restore cut short (pgBackRest writes
          # PG_VERSION early and global/pg_control last), so a crash mid-restore is resumed.
          ConditionPathExists = [
            "|!${cfg.dataDir}/PG_VERSION"
            "|!${cfg.dataDir}/global/pg_control"
            "|${cfg.dataDir}/backup.manifest"
          ];
        };
        path = unitPath;
        serviceConfig =
          oneshotAsPostgres
          // {
            # PGDATA may not exist yet (the engine creates it): its parent must be writable too.
            ReadWritePaths = writablePaths ++ ["-${cfg.dataDir}" "-${dirOf cfg.dataDir}" "-/var/log/pgbackrest" "-/var/spool/pgbackrest"];
            EnvironmentFile = environmentFiles;
            # A restore takes as long as it takes; progress is in the journal.
            TimeoutStartSec = "infinity";
            ExecStart = "${exe} --config ${configPath} run --lock-wait 1h";
          };
      };

      postgresql-preseed-verify = {
        description = "Verify PostgreSQL after a restore and write the pg-preseed receipt";
        wantedBy = ["postgresql.service" "multi-user.target"];
        requires = ["postgresql.service"];
        # postgresql-setup.service (NixOS 25.05+) finishes once recovery has ended.
        after = ["postgresql.service" "postgresql-setup.service"];
        path = unitPath;
        serviceConfig =
          oneshotAsPostgres
          // {
            ReadWritePaths = writablePaths;
            TimeoutStartSec = "infinity";
            ExecStart = "${exe} --config ${configPath} verify --lock-wait 1h";
          };
      };

      postgresql-preseed-drill = lib.mkIf cfg.drill.enable {
        description = "Restore drill: restore the newest backup privately and verify it (pg-preseed)";
        wants = ["network-online.target"];
        after = ["network-online.target" "postgresql-preseed-verify.service"];
        path = unitPath;
        serviceConfig =
          asPostgres
          // {
            Type = "oneshot";
            ReadWritePaths = writablePaths ++ [cfg.drill.scratchDir];
            EnvironmentFile = environmentFiles;
            Nice = 10;
            IOSchedulingClass = "idle";
            ExecStart = "${exe} --config ${configPath} drill --scratch ${cfg.drill.scratchDir}";
          };
      };

      postgresql = {
        requires = ["postgresql-preseed-preflight.service" "postgresql-preseed.service"];
        after = ["postgresql-preseed-preflight.service" "postgresql-preseed.service"];
        # Before nixpkgs' preStart (which runs initdb when PG_VERSION is missing), on every start
        # including Restart=always: refuse an empty PGDATA that pg-preseed did not clear.
        serviceConfig.ExecStartPre = lib.mkBefore ["${exe} --config ${configPath} initdb-guard"];
      };
    };
  };
}
