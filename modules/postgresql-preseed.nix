# services.postgresql-preseed: the JSON config pg-preseed reads, the checks that stop a wrong
# configuration at build time, and (./units.nix) the units that stand between the pools' mounts
# and postgresql.service. The options are in ./options.nix.
{
  config,
  lib,
  pkgs,
  options,
  ...
}: let
  d = import ./derived.nix {inherit config lib options;};
  inherit (d) cfg pg helpers dataDir markerFile scratchDir;

  requireMount =
    if cfg.requireMount == null
    then null
    else let
      mountpoint =
        if cfg.requireMount.mountpoint == null
        then dataDir
        else helpers.normalizePath cfg.requireMount.mountpoint;
    in
      {inherit (cfg.requireMount) dataset fstype;}
      # Written only when it says something: a filesystem mounted above dataDir.
      // lib.optionalAttrs (mountpoint != dataDir) {inherit mountpoint;};

  settings = {
    pgdata = dataDir;
    marker = markerFile;
    postgres = {
      bin_dir = "${d.pgPackage}/bin";
      major = lib.toInt d.major;
      user = "postgres";
      port = pg.settings.port;
      socket_dir = "/run/postgresql";
    };
    inherit (cfg) mode;
    require_mount = requireMount;
    on_layering = cfg.onLayering;
    on_no_backup = cfg.onNoBackup;
    pgbackrest = {
      inherit (cfg.pgbackrest) stanza set;
      repos =
        map (helpers.repoEntry (
          if d.repoNames == null
          then []
          else d.repoNames
        ))
        cfg.pgbackrest.repos;
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
      lib.mapAttrsToList (name: ds: {
        inherit name;
        mountpoint = helpers.normalizePath ds.mountpoint;
        inherit (ds) properties;
      })
      cfg.datasets;
    post_restore =
      if cfg.postRestore.script == null && cfg.postRestore.sql == []
      then null
      else {
        script =
          if cfg.postRestore.script == null
          then null
          else "${pkgs.writeShellScript "pg-preseed-post-restore" cfg.postRestore.script}";
        inherit (cfg.postRestore) sql timeout;
      };
    second_primary = {inherit (cfg.secondPrimary) mode watch;};
    metrics =
      if cfg.metrics.textfile == null
      then null
      else {inherit (cfg.metrics) textfile;};
  };

  # Built with `pg-preseed check-config` (the build platform's): a bad config fails
  # nixos-rebuild, not the boot.
  configFile =
    pkgs.runCommand "pg-preseed-config.json" {
      nativeBuildInputs = [cfg.checkPackage];
      json = builtins.toJSON settings;
      passAsFile = ["json"];
      preferLocalBuild = true;
    } ''
      cp "$jsonPath" "$out"
      pg-preseed check-config "$out"
    '';

  conflictChecks =
    map (conflict: {
      assertion = cfg.onLayering != "fail";
      message = helpers.conflictMessage conflict;
    })
    d.conflicts;

  # Checked only once PostgreSQL is known to be enabled: they read its package and dataDir,
  # which nixpkgs defines only then (reading them otherwise aborts evaluation before any
  # assertion can say what is wrong).
  assertionsWithPostgresql =
    [
      {
        assertion = dataDir != "/";
        message = "services.postgresql-preseed.dataDir must not be /.";
      }
      {
        assertion = dataDir == helpers.normalizePath pg.dataDir;
        message = "services.postgresql-preseed.dataDir (${dataDir}) must be services.postgresql.dataDir (${pg.dataDir}): the guard must stand in front of the directory PostgreSQL uses. Leave services.postgresql-preseed.dataDir at its default.";
      }
      {
        assertion = !(helpers.isAtOrBelow dataDir markerFile);
        message = "services.postgresql-preseed.markerFile (${markerFile}) is inside dataDir (${dataDir}); a marker there is emptied with PGDATA or survives on a hidden dataset. Leave markerFile at its default (/var/lib/postgresql-preseed/${d.major}/receipt.json) or put it on another filesystem.";
      }
      {
        assertion = cfg.pgbackrest.stanza != null;
        message = "services.postgresql-preseed.pgbackrest.stanza is not set${lib.optionalString (d.repoNames != null) " and services.pgbackrest defines ${toString (builtins.length d.stanzaNames)} stanzas (${lib.concatStringsSep ", " d.stanzaNames})"}: set it to the stanza to restore, e.g. services.postgresql-preseed.pgbackrest.stanza = \"default\".";
      }
      {
        assertion = cfg.pgbackrest.target.type == "default" || cfg.pgbackrest.target.type == "immediate" || cfg.pgbackrest.target.value != null;
        message = "services.postgresql-preseed.pgbackrest.target.type = \"${cfg.pgbackrest.target.type}\" needs target.value.";
      }
      {
        assertion = cfg.requireMount == null || cfg.requireMount.dataset != null || cfg.requireMount.fstype != null;
        message = "services.postgresql-preseed.requireMount needs dataset or fstype (or set it to null).";
      }
      {
        assertion = cfg.requireMount == null || cfg.requireMount.mountpoint == null || helpers.isAtOrBelow (helpers.normalizePath cfg.requireMount.mountpoint) dataDir;
        message = "services.postgresql-preseed.requireMount.mountpoint (${toString (cfg.requireMount.mountpoint or null)}) must be dataDir (${dataDir}) or a directory above it.";
      }
      {
        assertion = cfg.datasets == {} || d.zfsEnabled;
        message = "services.postgresql-preseed.datasets declares ZFS datasets (${lib.concatStringsSep ", " (builtins.attrNames cfg.datasets)}), but ZFS is not enabled on this host: add boot.supportedFilesystems = [ \"zfs\" ]; (and set networking.hostId), or remove the datasets.";
      }
      {
        assertion = !cfg.drill.enable || !(helpers.isAtOrBelow dataDir scratchDir || helpers.isAtOrBelow scratchDir dataDir);
        message = "services.postgresql-preseed.drill.scratchDir (${scratchDir}) must be outside dataDir (${dataDir}): a drill never writes into PGDATA.";
      }
      {
        assertion = !cfg.drill.enable || !(helpers.isAtOrBelow "/tmp" scratchDir || helpers.isAtOrBelow "/var/tmp" scratchDir);
        message = "services.postgresql-preseed.drill.scratchDir (${scratchDir}) is under /tmp or /var/tmp, which the drill's unit replaces with private, empty ones (PrivateTmp): choose a directory elsewhere, such as the default /var/lib/postgresql-preseed/drill.";
      }
    ]
    ++ map (message: {
      assertion = false;
      inherit message;
    }) (helpers.repoProblems d.repoNames cfg.pgbackrest.repos)
    ++ map (dup: {
      assertion = false;
      message = "services.postgresql-preseed.datasets.\"${dup.name}\" and fileSystems.\"${dup.fileSystemsKey}\" both mount ${dup.name}: the first sets its mountpoint property (ZFS mounts it), the second mounts it again as a legacy mount, and the two would stack. Keep one: remove the fileSystems entry (the dataset is then mounted by ZFS at its declared mountpoint), or remove it from services.postgresql-preseed.datasets (requireMount still follows the fileSystems entry).";
    })
    d.doublyDeclared
    ++ conflictChecks;
in {
  imports = [./options.nix ./units.nix];

  config = lib.mkIf cfg.enable {
    services.postgresql-preseed = {
      inherit settings configFile;
      requireMount = lib.mkIf d.pgEnabled (lib.mkDefault (helpers.requireMountFrom d.pgdataClaim));
    };

    assertions =
      [
        {
          assertion = d.pgEnabled;
          message = "services.postgresql-preseed guards services.postgresql: set services.postgresql.enable = true.";
        }
      ]
      ++ lib.optionals d.pgEnabled assertionsWithPostgresql;

    warnings = lib.optionals (d.pgEnabled && cfg.onLayering == "warn") (map (c: "${helpers.conflictMessage c}\n(services.postgresql-preseed.onLayering = \"warn\": this only warns.)") d.conflicts);

    environment.etc."pg-preseed/config.json".source = configFile;
    environment.etc."pg-preseed/bin/pg-preseed".source = lib.getExe cfg.package;
    environment.systemPackages = [cfg.package];
  };
}
