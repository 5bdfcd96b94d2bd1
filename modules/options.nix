# The options of services.postgresql-preseed (the interface); ./postgresql-preseed.nix is the
# implementation.
{
  config,
  lib,
  pkgs,
  ...
}: let
  inherit (lib) mkOption types literalExpression;
  cfg = config.services.postgresql-preseed;
  pg = config.services.postgresql;
  pgbackrest = config.services.pgbackrest;
  helpers = import ./lib.nix {inherit lib;};

  absolutePath = helpers.safePath;

  # `services.pgbackrest` numbers its repositories by attribute name (repo1 = first name in
  # alphabetical order), so the names are what users know and the numbers are what pgBackRest
  # needs.
  pgbackrestRepoNames =
    if pgbackrest.enable or false
    then builtins.attrNames (pgbackrest.repos or {})
    else [];
  pgbackrestStanzas =
    if pgbackrest.enable or false
    then builtins.attrNames (pgbackrest.stanzas or {})
    else [];

  sqlCheck = types.submodule {
    options = {
      name = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "Name shown in the log and the receipt (default: the SQL itself).";
      };
      sql = mkOption {
        type = types.str;
        description = "The query. It passes when it runs and its first value is not false or NULL (or equals `expect`).";
      };
      expect = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "Exact text the first value must have.";
      };
    };
  };
in {
  options.services.postgresql-preseed = {
    enable = lib.mkEnableOption ''
      postgresql-preseed: restore PostgreSQL from pgBackRest when its data directory is empty,
      and refuse, before PostgreSQL starts, whenever that is not safe (stacked or missing mounts,
      unreachable repositories, a backup of another major version)
    '';

    package = mkOption {
      type = types.package;
      description = "The pg-preseed package. The flake's module sets it to the flake's own build.";
      example = literalExpression "inputs.postgresql-preseed.packages.\${pkgs.stdenv.hostPlatform.system}.default";
    };

    checkPackage = mkOption {
      type = types.package;
      default = cfg.package;
      defaultText = literalExpression "config.services.postgresql-preseed.package";
      internal = true;
      description = ''
        The pg-preseed that checks the generated config at build time: it runs on the build
        platform, so a cross-compiled system needs the build platform's build (the flake's
        module sets it).
      '';
    };

    dataDir = mkOption {
      type = absolutePath;
      default = pg.dataDir;
      defaultText = literalExpression "config.services.postgresql.dataDir";
      description = "PostgreSQL's data directory (PGDATA). Must be the one PostgreSQL uses.";
    };

    markerFile = mkOption {
      type = absolutePath;
      default = "/var/lib/postgresql-preseed/${helpers.pgMajor pg.package}/receipt.json";
      defaultText = literalExpression ''"/var/lib/postgresql-preseed/''${major version of services.postgresql.package}/receipt.json"'';
      description = ''
        The receipt written once a restored (or adopted, or new) cluster was verified. It must be
        outside dataDir and outside dataDir's filesystem: a marker inside PGDATA is exactly what
        survived on a hidden dataset in the incident this module exists for. Nobody ever has to
        delete it before a restore; emptying dataDir is enough.
      '';
    };

    mode = mkOption {
      type = types.enum ["restore" "guard"];
      default = "restore";
      description = ''
        `restore`: restore automatically when dataDir is empty. `guard`: never restore by
        itself; refuse (PostgreSQL stays down) and print the command that would restore.
      '';
    };

    requireMount = mkOption {
      type = types.nullOr (types.submodule {
        options = {
          dataset = mkOption {
            type = types.nullOr types.str;
            default = null;
            example = "tank/services/postgresql";
            description = "ZFS dataset PGDATA must be on.";
          };
          fstype = mkOption {
            type = types.nullOr types.str;
            default = null;
            example = "xfs";
            description = "Filesystem type PGDATA must be on.";
          };
          mountpoint = mkOption {
            type = types.nullOr absolutePath;
            default = null;
            example = "/var/lib/postgresql";
            description = "Where that filesystem is mounted: dataDir itself (null) or a directory above it.";
          };
        };
      });
      defaultText = literalExpression ''
        the declaration nearest above dataDir (datasets, fileSystems, disko's ZFS datasets):
        { dataset = "<name>"; mountpoint = "<where>"; } for ZFS, { fstype = "<type>"; … } for
        others; null when nothing declared covers dataDir
      '';
      example = {
        dataset = "tank/services/postgresql";
      };
      description = ''
        The filesystem PGDATA must be on. When it is not mounted where it should be, nothing is
        restored: pgBackRest would otherwise create dataDir on the filesystem underneath (the root
        filesystem) and restore onto it. Derived from the configuration's own declarations; set
        it by hand for a filesystem mounted outside NixOS, or to null to turn the check off.
      '';
    };

    onLayering = mkOption {
      type = types.enum ["fail" "warn"];
      default = "fail";
      description = ''
        What stacked mounts or two datasets sharing a mountpoint (on dataDir, above or below it,
        or above the receipt) do. `fail`: this configuration does not build when two of its own
        declarations claim such a mountpoint, and at boot PostgreSQL stays down with a message
        naming every mount and the fix. `warn`: the build prints a warning instead, and at boot
        the finding is only logged. Mount identity and receipt placement always fail.
      '';
    };

    onNoBackup = mkOption {
      type = types.enum ["initdb" "fail"];
      default = "fail";
      description = ''
        With no receipt, an empty dataDir and repositories that are all reachable and hold no
        backup (a first deployment): `initdb` lets PostgreSQL create a new cluster, `fail` keeps
        it down. A host that has a receipt is never initialised afresh either way.
      '';
    };

    pgbackrest = {
      package = mkOption {
        type = types.package;
        default = pkgs.pgbackrest;
        defaultText = literalExpression "pkgs.pgbackrest";
        description = "The pgBackRest package used to restore.";
      };

      stanza = mkOption {
        type = types.nullOr types.str;
        default =
          if builtins.length pgbackrestStanzas == 1
          then builtins.head pgbackrestStanzas
          else null;
        defaultText = literalExpression "the only stanza of services.pgbackrest.stanzas, if there is exactly one";
        description = "The pgBackRest stanza to restore.";
      };

      repos = mkOption {
        type = types.listOf (types.either (types.ints.between 1 256) types.str);
        default =
          if pgbackrestRepoNames == []
          then [1]
          else if builtins.length pgbackrestRepoNames == 1
          then pgbackrestRepoNames
          else [];
        defaultText = literalExpression ''
          the only repository of services.pgbackrest.repos; [ 1 ] without services.pgbackrest;
          no default when services.pgbackrest has several (an assertion asks for the order)
        '';
        example = ["nas" "s3"];
        description = ''
          Repositories to restore from, in the order they are tried: a later one is used only
          when the earlier ones are unreachable, hold no usable backup, or fail mid-restore.
          Write repository numbers (`2` for repo2) or names of `services.pgbackrest.repos`.
          That module numbers its repositories by attribute name in alphabetical order
          (repo1 = first name), so names are mapped to those numbers here; this list, not the
          alphabet, decides the order in which they are tried.
        '';
      };

      set = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "20240101-000000F";
        description = "A backup label to restore instead of the newest backup.";
      };

      target = {
        type = mkOption {
          type = types.enum ["default" "immediate" "time" "lsn" "name" "xid"];
          default = "default";
          description = "Recovery target type (`default` replays all WAL). Recovery promotes at the target.";
        };
        value = mkOption {
          type = types.nullOr types.str;
          default = null;
          example = "2026-01-02 03:04:05+00";
          description = "Recovery target value (for time, lsn, name and xid). A time carries its UTC offset, as pgBackRest wants it: `YYYY-MM-DD HH:MM:SS+HH`.";
        };
      };

      processMax = mkOption {
        type = types.nullOr (types.ints.between 1 999);
        default = null;
        description = "Parallel restore processes (default: the number of CPUs).";
      };

      configFile = mkOption {
        type = types.nullOr absolutePath;
        default =
          if pgbackrest.enable or false
          then "/etc/pgbackrest/pgbackrest.conf"
          else null;
        defaultText = literalExpression ''"/etc/pgbackrest/pgbackrest.conf" when services.pgbackrest is enabled, else pgBackRest's default'';
        description = "pgBackRest's configuration file.";
      };

      environmentFile = mkOption {
        # A string, not types.path: a path literal (./pgbackrest.env) would be copied into the
        # world-readable Nix store.
        type = types.nullOr absolutePath;
        default = null;
        example = "/run/secrets/pgbackrest.env";
        description = ''
          A file of `PGBACKREST_REPO2_S3_KEY=…` lines (systemd EnvironmentFile) with the
          repository credentials. Secrets reach pgBackRest only through it: never through argv,
          the config, the receipt or the Nix store. Give it as a string (a path literal would be
          copied into the store).
        '';
      };

      maxBackupAge = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "7days";
        description = "A newest backup older than this is not restored automatically.";
      };

      repoWait = mkOption {
        type = types.str;
        default = "1min";
        description = "How long to wait at boot for a repository that is not reachable yet (an NFS share mounting late).";
      };

      archiveGet = {
        async = mkOption {
          type = types.bool;
          default = true;
          description = ''
            Replay after a restore fetches WAL through pgBackRest's asynchronous archive-get
            queue, which prefetches the next segments while PostgreSQL replays (1.27 times as
            fast as asking for each segment in the measured WAL-heavy case). Only "fetched" is
            believed from the queue: anything else is asked of every repository directly, so a
            repository that cannot be asked still stops recovery instead of ending it early. A
            segment the queue does not hold yet (replay caught up with it, e.g. behind another
            server still archiving) is asked directly too. `false`: every segment is asked
            directly.
          '';
        };
        queueMax = mkOption {
          type = types.str;
          default = "256MiB";
          description = "How much WAL the queue may hold ahead of replay (at least 16MiB).";
        };
        processMax = mkOption {
          type = types.nullOr (types.ints.between 1 999);
          default = null;
          description = "Processes fetching for the queue; null: one per CPU.";
        };
        spoolPath = mkOption {
          type = absolutePath;
          default = "/var/spool/pgbackrest";
          description = ''
            The queue's directory (pgBackRest's spool path), made for postgres and writable by
            postgresql.service (where the restore_command runs), the restore unit and the drill.
            Not inside dataDir.
          '';
        };
      };
    };

    verify = {
      sql = mkOption {
        type = types.listOf (types.either types.str sqlCheck);
        default = [];
        example = literalExpression ''[ "SELECT count(*) > 0 FROM orders" { name = "users"; sql = "SELECT count(*) >= 1 FROM users"; } ]'';
        description = ''
          Checks run by postgresql-preseed-verify.service once PostgreSQL has finished recovery.
          The receipt is written only when all pass (besides the built-in ones: recovery has
          ended, the server runs on dataDir, it is the cluster that was restored).
        '';
      };
      database = mkOption {
        type = types.str;
        default = "postgres";
        description = "Database the checks connect to.";
      };
      timeout = mkOption {
        type = types.str;
        default = "1h";
        description = "How long verification waits for PostgreSQL to accept connections and finish recovery.";
      };
    };

    postRestore = {
      script = mkOption {
        type = types.nullOr types.lines;
        default = null;
        example = ''
          psql -v ON_ERROR_STOP=1 -c "ALTER ROLE app PASSWORD '$APP_PASSWORD'"
          curl -fsS -d "restored $PG_PRESEED_BACKUP from repo $PG_PRESEED_REPO" https://ntfy.example/db
        '';
        description = ''
          A shell script run exactly once after a restore (or a first `initdb`, with
          `onNoBackup = "initdb"`) has been verified, before the receipt is written: re-grant
          roles, reset passwords from a secret, re-create replication slots or subscriptions,
          notify someone. Not on a normal boot, not after an existing cluster was adopted, not in
          a drill. It runs as postgres inside postgresql-preseed-verify.service (its sandbox: it
          writes only under the receipt's directory and the metrics directory; the network is
          reachable), after `sql`, with `PG_PRESEED_ACTION`, `PG_PRESEED_REPO`,
          `PG_PRESEED_REPO_NAME`, `PG_PRESEED_BACKUP`, `PG_PRESEED_SYSTEM_ID`,
          `PG_PRESEED_TARGET` and libpq's `PGHOST`/`PGPORT`/`PGUSER`/`PGDATABASE` (so `psql`
          reaches the server) in its environment. A failure (non-zero exit, `timeout`) fails the
          verify unit without a receipt and is retried at the next start of PostgreSQL; once it
          succeeded it never runs again for that restore. Its output goes to the journal.
        '';
      };
      sql = mkOption {
        type = types.listOf types.str;
        default = [];
        example = ["GRANT SELECT ON ALL TABLES IN SCHEMA public TO reporting" "ANALYZE"];
        description = ''
          Statements psql runs (as postgres, on verify.database) once after a restore, before
          `script`: each in its own transaction, stopping at the first error, which fails the
          hook as `script` does. They go to psql on stdin, never on a command line; a secret
          from `environmentFile` is read with psql's `\getenv`.
        '';
      };
      environmentFile = mkOption {
        # A string, not types.path: a path literal would be copied into the world-readable store.
        type = types.nullOr absolutePath;
        default = null;
        example = "/run/secrets/post-restore.env";
        description = ''
          A file of `NAME=value` lines (systemd EnvironmentFile) for the hook's secrets, given to
          postgresql-preseed-verify.service only. pgBackRest's credentials (`PGBACKREST_*`) are
          withheld from the hook.
        '';
      };
      timeout = mkOption {
        type = types.str;
        default = "30min";
        description = "How long `sql` and `script` may take together before the hook is killed (with its children) and counted as failed.";
      };
    };

    secondPrimary = {
      mode = mkOption {
        type = types.enum ["refuse" "warn" "off"];
        default = "refuse";
        description = ''
          What a restored server does about another server that still writes the repository it
          was restored from (a spare host restored while the old primary runs, a staging copy
          built from production's configuration, a network partition): two primaries archiving
          into one repository interleave their timelines, and a later restore may follow the
          wrong one. After a restore, pg-preseed holds the restored server's archiving
          (`archive_command` = `pg-preseed archive-hold`, so PostgreSQL keeps its WAL) until
          postgresql-preseed-verify.service has watched the repositories for `watch`.
          `refuse`: when another writer shows, the restore or verify unit fails, naming the
          repository and the other writer's newest WAL, with archiving still held; fence the old
          host, or allow it with `pg-preseed run --allow-second-primary` (or `verify
          --allow-second-primary`). `warn`: it says so and releases archiving all the same.
          `off`: no hold, no watch.
        '';
      };
      watch = mkOption {
        type = types.str;
        default = "90s";
        description = ''
          How long verify watches the repositories for another writer after recovery has ended,
          with archiving held (at most 1h). Longer than the old primary's `archive_timeout`, so a
          primary that writes anything archives at least once while it is watched.
        '';
      };
    };

    datasets = mkOption {
      type = types.attrsOf (types.submodule {
        options = {
          mountpoint = mkOption {
            type = absolutePath;
            description = "Where the dataset mounts (its `mountpoint` property).";
          };
          properties = mkOption {
            type = types.attrsOf types.str;
            default = {};
            example = {
              recordsize = "16K";
              compression = "lz4";
            };
            description = "ZFS properties to set on it (besides mountpoint).";
          };
        };
      });
      default = {};
      example = literalExpression ''
        { "tank/services/postgresql" = { mountpoint = "/var/lib/postgresql/16"; properties.recordsize = "16K"; }; }
      '';
      description = ''
        ZFS datasets this host declares, by full name. At boot, before ZFS mounts anything,
        postgresql-preseed-datasets.service creates missing ones (unmounted), sets their
        properties, sets `overlay=off` and `snapdir=hidden` on dataDir's dataset, and refuses — keeping PostgreSQL
        down — when a dataset not declared here claims one of these mountpoints.
      '';
    };

    drill = {
      enable = lib.mkEnableOption ''
        a scheduled restore drill: `pg-preseed drill` restores the newest usable backup into
        a scratch directory, starts it on a private socket, runs the verify checks, and removes
        it, so a backup that would not restore is found before the day it is needed. Its
        outcome is in the journal and, with metrics.textfile, in the metrics
      '';
      schedule = mkOption {
        type = types.str;
        default = "weekly";
        example = "Sun 04:00";
        description = "When to drill (systemd OnCalendar).";
      };
      scratchDir = mkOption {
        type = absolutePath;
        default = "/var/lib/postgresql-preseed/drill";
        description = ''
          Where the drill restores; it needs room for a whole copy of the cluster. Not inside
          dataDir, and not under /tmp or /var/tmp (the drill's unit has private ones).
        '';
      };
    };

    metrics.textfile = mkOption {
      type = types.nullOr absolutePath;
      default = null;
      example = "/var/lib/prometheus-node-exporter/pg-preseed.prom";
      description = "A Prometheus textfile-collector file the units keep up to date. Its directory is created for postgres (0755; an existing one is given to postgres), which writes the file there.";
    };

    configFile = mkOption {
      type = types.path;
      readOnly = true;
      description = "The generated, build-time-checked JSON config (/etc/pg-preseed/config.json).";
    };

    settings = mkOption {
      type = types.attrsOf types.anything;
      readOnly = true;
      internal = true;
      description = "The config the module writes, before it becomes JSON (for tests).";
    };
  };
}
