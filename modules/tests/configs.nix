# The config JSON the module writes for a range of configurations, by name: scripts/check-module-
# configs runs the real `pg-preseed check-config` on each, so the module and the engine's parser
# cannot drift apart (the flake builds the same check into every system's config derivation).
{lib}: let
  support = import ./support.nix {inherit lib;};
  host = modules:
    (support.evalSystem {
      modules =
        [
          {
            services.postgresql.enable = true;
            services.postgresql-preseed = {
              enable = true;
              pgbackrest.stanza = lib.mkDefault "main";
            };
            boot.supportedFilesystems = ["zfs"];
          }
        ]
        ++ modules;
    })
    .services
    .postgresql-preseed
    .settings;
  example =
    (support.evalSystem {
      modules = [../../examples/host/configuration.nix];
      specialArgs.inputs.postgresql-preseed.nixosModules.default = {};
    })
    .services
    .postgresql-preseed
    .settings;
in {
  minimal = host [];
  inherit example;
  everything = host [
    {
      services.postgresql.package = support.pkgs.postgresql_16;
      services.postgresql.settings.port = 5433;
      services.pgbackrest = {
        enable = true;
        repos = {
          nas = {
            host = null;
            path = "/mnt/nas/pgbackrest";
          };
          s3.type = "s3";
        };
      };
      services.postgresql-preseed = {
        mode = "guard";
        onLayering = "warn";
        onNoBackup = "initdb";
        datasets."tank/pg" = {
          mountpoint = "/var/lib/postgresql/16";
          properties.recordsize = "16K";
        };
        pgbackrest = {
          stanza = "default";
          repos = ["s3" "nas"];
          set = "20260101-000000F";
          target = {
            type = "time";
            value = "2026-01-02 03:04:05+00";
          };
          processMax = 4;
          maxBackupAge = "7days";
          repoWait = "2min";
          environmentFile = "/run/secrets/pgbackrest.env";
        };
        verify = {
          sql = [
            "SELECT true"
            {
              name = "orders";
              sql = "SELECT count(*) FROM pg_class";
              expect = "3";
            }
          ];
          database = "postgres";
          timeout = "30min";
        };
        postRestore = {
          script = "psql -c 'ANALYZE'";
          sql = ["GRANT SELECT ON pg_class TO PUBLIC"];
          environmentFile = "/run/secrets/hook.env";
          timeout = "10min";
        };
        secondPrimary = {
          mode = "warn";
          watch = "2min";
        };
        metrics.textfile = "/var/lib/prometheus-node-exporter/pg-preseed.prom";
        drill.enable = true;
      };
    }
  ];
  datasetAboveDataDir = host [{services.postgresql-preseed.datasets."tank/pg".mountpoint = "/var/lib/postgresql";}];
  xfsAtDataDir = host [
    {
      fileSystems."/var/lib/postgresql/17" = {
        device = "/dev/disk/by-label/pg";
        fsType = "xfs";
      };
    }
  ];
}
