# The units of services.postgresql-preseed and what they add to postgresql.service. Which
# hardening each unit has and why: docs/design.md, "The units".
{
  config,
  lib,
  options,
  ...
}: let
  d = import ./derived.nix {inherit config lib options;};
  inherit (d) cfg pg helpers dataDir markerDir scratchDir spoolDir command;

  hasDatasets = cfg.datasets != {};
  unitPath = lib.optional d.zfsEnabled config.boot.zfs.package;

  # Sandboxing every unit of ours can have, including the datasets unit, which runs before
  # local-fs.target (DefaultDependencies=no). Nothing here may make systemd add an ordering
  # dependency on a unit that runs after the filesystems are mounted: that would be an ordering
  # cycle at every boot, which systemd "breaks" by deleting a job (PostgreSQL never starts).
  # PrivateTmp= is such a setting (After=systemd-tmpfiles-setup.service, itself
  # After=local-fs.target), and so are RootDirectory=, *Directory= and LogNamespace=.
  earlySafeHardening = {
    NoNewPrivileges = true;
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
    SystemCallArchitectures = "native";
    SystemCallFilter = ["@system-service" "~@privileged" "~@resources"];
    RestrictAddressFamilies = ["AF_UNIX" "AF_INET" "AF_INET6" "AF_NETLINK"];
    # `zfs list` needs /dev/zfs, nothing else from /dev.
    DevicePolicy = "closed";
    DeviceAllow = lib.optional d.zfsEnabled "/dev/zfs rw";
    UMask = "0022";
  };

  # The units that run after the filesystems are mounted, as the PostgreSQL user.
  asPostgres =
    earlySafeHardening
    // {
      PrivateTmp = true;
      RemoveIPC = true;
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

  # Repository credentials reach pgBackRest only through the environment.
  environmentFiles = lib.optional (cfg.pgbackrest.environmentFile != null) cfg.pgbackrest.environmentFile;

  # services.pgbackrest's repositories on a local path (posix, not behind a repository host).
  localRepoPaths = lib.optionals (d.repoNames != null) (map (repo: helpers.normalizePath repo.path) (builtins.filter (repo: (repo.type or "posix") == "posix" && (repo.host or null) == null && (repo.path or null) != null) (builtins.attrValues config.services.pgbackrest.repos)));

  # A repository on an NFS share or a disk is mounted before anything reads it. remote-fs.target
  # is no such promise: systemd does not order a `nofail` mount before it (systemd.mount(5)), and
  # tier 4 booted the restore unit asking the empty mountpoint while the share was still
  # mounting. Wants, not Requires: a share that fails to mount must not stop a restore from
  # another repository (pg-preseed tells an unmounted share from an empty repository). Not on
  # postgresql.service: on a healthy boot (restore unit skipped) a NAS that is down would hold
  # the database back for the mount's timeout, and archive_command into an unmounted share's
  # empty directory fails safely (no archive.info there) and is retried.
  WantsMountsFor = localRepoPaths;

  # The units' order at boot: pools imported and mounted, then our checks, then PostgreSQL.
  mountsReady = [
    "local-fs.target"
    "remote-fs.target"
    "zfs-mount.service"
    "systemd-tmpfiles-setup.service"
  ];
in {
  config = lib.mkIf (cfg.enable && d.pgEnabled) {
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
      lib.optional cfg.drill.enable "d ${scratchDir} 0700 postgres postgres - -"
      ++ [
        # Owned by postgres and writable by nobody else: preflight refuses a receipt directory
        # others could plant a receipt or claim in.
        "d ${markerDir} 0755 postgres postgres - -"
        # PGDATA belongs to postgres before the restore unit (running as postgres) looks at it: a
        # freshly created dataset's root is root's. Mode untouched ("-"): pgBackRest and initdb set
        # it. (nixpkgs' StateDirectory does this too, but only when postgresql.service starts.)
        "d ${dataDir} - postgres postgres - -"
      ]
      # The metrics textfile's directory: the units, as postgres, replace the file in it
      # (nothing creates a node exporter's textfile directory by itself).
      ++ lib.optional (cfg.metrics.textfile != null) "d ${dirOf cfg.metrics.textfile} 0755 postgres postgres - -"
      # The archive-get queue (pgBackRest's spool): /var/spool is root's.
      ++ lib.optional cfg.pgbackrest.archiveGet.async "d ${spoolDir} 0750 postgres postgres - -";

    systemd.services = {
      postgresql-preseed-datasets = lib.mkIf hasDatasets {
        description = "Reconcile the ZFS datasets declared for PostgreSQL (pg-preseed)";
        # Runs between pool import and mounting, so new datasets are mounted in order and a
        # leftover one on PGDATA's mountpoint is refused before anything mounts.
        unitConfig.DefaultDependencies = false;
        wantedBy = ["zfs-mount.service"];
        requiredBy = ["postgresql-preseed-preflight.service"];
        after = ["zfs-import.target"];
        before = ["zfs-mount.service" "local-fs.target" "postgresql-preseed-preflight.service" "shutdown.target"];
        conflicts = ["shutdown.target"];
        path = unitPath;
        # Applied at the next boot or start of PostgreSQL, never by restarting it on a switch
        # (preflight requires it, and PostgreSQL requires preflight).
        restartIfChanged = false;
        serviceConfig =
          earlySafeHardening
          // {
            Type = "oneshot";
            RemainAfterExit = true;
            # zfs create/set are privileged ioctls on /dev/zfs.
            CapabilityBoundingSet = ["CAP_SYS_ADMIN"];
            SystemCallFilter = ["@system-service" "~@resources"];
            PrivateNetwork = true;
            # Its outcome for `status` and the metrics (datasets.last-run): the receipt's
            # directory may not be mounted yet. /run is there before any unit starts; the implicit
            # RequiresMountsFor=/run/pg-preseed orders it after no filesystem of ZFS's (tier 4
            # boots it: no ordering cycle). Kept when the unit stops, so status can read it.
            RuntimeDirectory = "pg-preseed";
            RuntimeDirectoryMode = "0755";
            RuntimeDirectoryPreserve = true;
            ExecStart = command ["datasets" "ensure"];
          };
      };

      postgresql-preseed-preflight = {
        description = "Check PostgreSQL's mounts, datasets and receipt before it starts (pg-preseed)";
        wantedBy = ["multi-user.target"];
        requiredBy = ["postgresql.service"];
        # Stopped and restarted with PostgreSQL, so `systemctl start postgresql` after a stop
        # runs the checks again instead of finding them still "active (exited)" from boot.
        partOf = ["postgresql.service"];
        requires = lib.optional hasDatasets "postgresql-preseed-datasets.service";
        after = mountsReady ++ lib.optional hasDatasets "postgresql-preseed-datasets.service";
        before = ["postgresql.service" "postgresql-preseed.service"];
        unitConfig.RequiresMountsFor = [dataDir markerDir];
        path = unitPath;
        restartIfChanged = false;
        serviceConfig =
          oneshotAsPostgres
          // {
            ReadWritePaths = writablePaths;
            PrivateNetwork = true;
            ExecStart = command ["preflight"];
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
        restartIfChanged = false;
        unitConfig = {
          RequiresMountsFor = [dataDir markerDir];
          inherit WantsMountsFor;
          # Skipped, without running anything, on a boot where PGDATA holds a cluster. It still
          # runs when pgBackRest's manifest shows a restore cut short (pgBackRest writes
          # PG_VERSION early and global/pg_control last), so a crash mid-restore is resumed.
          ConditionPathExists = [
            "|!${dataDir}/PG_VERSION"
            "|!${dataDir}/global/pg_control"
            "|${dataDir}/backup.manifest"
          ];
        };
        path = unitPath;
        serviceConfig =
          oneshotAsPostgres
          // {
            # Only PGDATA itself, not its parent: a bind of the parent would show PGDATA's
            # mount a second time inside the unit. When PGDATA was removed (not only emptied),
            # it is created again first, as the boot's tmpfiles rule does, with full
            # privileges ("+") and before the sandbox of the main command is set up.
            ExecStartPre = "+${config.systemd.package}/bin/systemd-tmpfiles --create --prefix=${dataDir}";
            ReadWritePaths = writablePaths ++ ["-${dataDir}" "-/var/log/pgbackrest" "-${spoolDir}"];
            EnvironmentFile = environmentFiles;
            # A restore takes as long as it takes; progress is in the journal.
            TimeoutStartSec = "infinity";
            ExecStart = command ["run" "--lock-wait" "1h"];
          };
      };

      postgresql-preseed-verify = {
        description = "Verify PostgreSQL after a restore and write the pg-preseed receipt";
        wantedBy = ["postgresql.service" "multi-user.target"];
        # Stopped when PostgreSQL stops (Requires=), so the next start of PostgreSQL runs it again.
        requires = ["postgresql.service"];
        # postgresql-setup.service (NixOS 25.05+) finishes once PostgreSQL accepts connections.
        after = ["postgresql.service" "postgresql-setup.service"];
        path = unitPath;
        serviceConfig =
          oneshotAsPostgres
          // {
            ReadWritePaths = writablePaths;
            # The post-restore hook runs inside verify; its secrets come from its own file.
            EnvironmentFile = environmentFiles ++ lib.optional (cfg.postRestore.environmentFile != null) cfg.postRestore.environmentFile;
            # Recovery, the watch for a second primary and the post-restore hook take as long as
            # they take (each has its own timeout in the config).
            TimeoutStartSec = "infinity";
            ExecStart = command ["verify" "--lock-wait" "1h"];
          };
      };

      postgresql-preseed-drill = lib.mkIf cfg.drill.enable {
        description = "Restore drill: restore the newest backup privately and verify it (pg-preseed)";
        wants = ["network-online.target"];
        after = ["network-online.target" "postgresql-preseed-verify.service"];
        unitConfig = {inherit WantsMountsFor;};
        path = unitPath;
        serviceConfig =
          asPostgres
          // {
            Type = "oneshot";
            ReadWritePaths = writablePaths ++ [scratchDir "-${spoolDir}"];
            EnvironmentFile = environmentFiles;
            # The drill runs a PostgreSQL server; its JIT (LLVM) writes executable memory.
            MemoryDenyWriteExecute = !(pg.enableJIT or false);
            Nice = 10;
            IOSchedulingClass = "idle";
            ExecStart = command ["drill" "--scratch" scratchDir];
          };
      };

      postgresql = {
        requires = ["postgresql-preseed-preflight.service" "postgresql-preseed.service"];
        # nixpkgs' postgresql.service is ProtectSystem=strict and its pgbackrest module adds no
        # writable path: archive_command could not push to a repository on a local path (a
        # disk, an NFS share). Those paths become writable for it ("-": absent is fine).
        # The archive-get queue is filled by pgBackRest started from the restore_command.
        serviceConfig.ReadWritePaths = map (path: "-${path}") (localRepoPaths ++ lib.optional cfg.pgbackrest.archiveGet.async spoolDir);
        # After a restore, PostgreSQL's restore_command is `pg-preseed archive-get`, which runs
        # pgBackRest: the repository credentials must reach it too.
        serviceConfig.EnvironmentFile = environmentFiles;
        after = ["postgresql-preseed-preflight.service" "postgresql-preseed.service"];
        # Before nixpkgs' preStart (which runs initdb when PG_VERSION is missing), on every start
        # including Restart=: refuse an empty PGDATA that pg-preseed did not clear. Through the
        # stable /etc path, so updating pg-preseed does not change this unit (no restart).
        serviceConfig.ExecStartPre = lib.mkBefore [(command ["initdb-guard"])];
      };
    };
  };
}
