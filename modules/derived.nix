# What the module's implementation files compute from the configuration, computed in one place.
# Paths are normalised here once; nothing downstream reads cfg.dataDir or cfg.markerFile raw.
{
  config,
  lib,
  options,
}: let
  cfg = config.services.postgresql-preseed;
  pg = config.services.postgresql;
  pgbackrest = config.services.pgbackrest;
  helpers = import ./lib.nix {inherit lib;};
in rec {
  inherit cfg pg helpers;

  # nixpkgs defines services.postgresql.package and .dataDir only when PostgreSQL is enabled:
  # nothing below that reads them may be forced unless this is true.
  pgEnabled = pg.enable or false;
  pgPackage = pg.finalPackage or pg.package;
  major = helpers.pgMajor pg.package;

  dataDir = helpers.normalizePath cfg.dataDir;
  markerFile = helpers.normalizePath cfg.markerFile;
  markerDir = dirOf markerFile;
  scratchDir = helpers.normalizePath cfg.drill.scratchDir;
  spoolDir = helpers.normalizePath cfg.pgbackrest.archiveGet.spoolPath;

  # services.pgbackrest's repository names (it numbers them repo1, repo2, … in this, alphabetical,
  # order), or null when that module is not enabled.
  repoNames =
    if pgbackrest.enable or false
    then builtins.attrNames (pgbackrest.repos or {})
    else null;
  stanzaNames =
    if pgbackrest.enable or false
    then builtins.attrNames (pgbackrest.stanzas or {})
    else [];

  zfsEnabled = lib.attrByPath ["boot" "zfs" "enabled"] false config;

  # Every filesystem this configuration declares, and the nearest one holding dataDir.
  claims = helpers.claims {
    inherit (cfg) datasets;
    fileSystems = config.fileSystems or {};
    disko =
      if options ? disko
      then config.disko.devices or null
      else null;
  };
  pgdataClaim = helpers.nearestClaim claims dataDir;
  concerned = helpers.concerns {inherit dataDir markerDir;};
  conflicts = helpers.conflicts concerned claims;
  doublyDeclared = helpers.doublyDeclared cfg.datasets (config.fileSystems or {});

  # The units call pg-preseed and its config through paths that do not change when pg-preseed
  # is updated (/etc entries pointing into the store), so an update does not change the unit
  # files of postgresql.service or of the units it requires, and `nixos-rebuild switch` does
  # not restart PostgreSQL for it. The next start of PostgreSQL runs the new pg-preseed.
  exe = "/etc/pg-preseed/bin/pg-preseed";
  configPath = "/etc/pg-preseed/config.json";
  command = args: helpers.execLine ([exe "--config" configPath] ++ args);
}
