# What the scenarios share: the repository host and a database host on ZFS with the module.
{module}: let
  # NixOS' fixed uid/gid of the postgres user (ids.uids.postgres): the NFS export belongs to it.
  postgresUid = 71;
in rec {
  # Every scenario's test script starts with ./common.py (helpers) and then its own file.
  testScript = name: builtins.readFile ./common.py + builtins.readFile (./. + "/${name}.py");

  # The usual scenario: the repository host and one database host that starts empty
  # (onNoBackup = "initdb") and is given data and a backup by the script.
  standard = {
    name,
    globalTimeout ? 1800,
  }: {
    name = "postgresql-preseed-${name}";
    inherit globalTimeout;
    nodes = {
      inherit backup;
      db = db {
        onNoBackup = "initdb";
        verifySql = ["SELECT count(*) > 0 FROM pg_class"];
      };
    };
    testScript = testScript name;
  };

  # The repository host: an NFS export holding repo1, like the incident's NAS.
  backup = {pkgs, ...}: {
    services.nfs.server = {
      enable = true;
      exports = ''
        /srv/pgbackrest *(rw,sync,no_subtree_check,no_root_squash)
      '';
    };
    networking.firewall.enable = false;
    # The repository lives in a directory inside the export: when the share is not mounted, the
    # path is missing (unreachable), never an empty repository.
    systemd.tmpfiles.rules = [
      "d /srv/pgbackrest 0755 root root -"
      "d /srv/pgbackrest/repo 0750 ${toString postgresUid} ${toString postgresUid} -"
    ];
    environment.systemPackages = [pkgs.nfs-utils];
  };

  # A database host: a second disk for the pool `tank` (created by the test script, imported at
  # every boot after that), PostgreSQL 17 on the declared dataset, pgBackRest with repo1 on the
  # NFS share, and the module.
  db = {
    onNoBackup ? "fail",
    verifySql ? [],
    extraRepos ? {},
    repoOrder ? ["nfs"],
    environmentFile ? null,
    environmentFileText ? null,
  }: {
    pkgs,
    lib,
    ...
  }: {
    imports = [module];

    virtualisation = {
      emptyDiskImages = [4096];
      memorySize = 2048;
      cores = 2;
    };
    networking.hostId = "deadbeef";
    networking.firewall.enable = false;
    boot.supportedFilesystems = ["zfs"];
    boot.zfs.forceImportRoot = false;
    boot.zfs.extraPools = ["tank"];
    # /dev/disk/by-id is not populated in the NixOS test VMs.
    boot.zfs.devNodes = "/dev/disk/by-uuid";
    environment.systemPackages = [pkgs.parted];

    # virtualisation.fileSystems, not fileSystems: in test VMs qemu-vm.nix replaces the whole of
    # fileSystems with virtualisation.fileSystems (mkVMOverride), so a fileSystems entry here
    # would never be mounted.
    virtualisation.fileSystems."/mnt/pgbackrest" = {
      device = "backup:/srv/pgbackrest";
      fsType = "nfs";
      options = ["nofail" "_netdev" "x-systemd.mount-timeout=15s" "soft" "timeo=30" "retrans=2"];
    };

    services.postgresql = {
      enable = true;
      package = pkgs.postgresql_17;
    };

    services.pgbackrest = {
      enable = true;
      repos =
        {
          nfs = {
            # A local path (on the NFS mount), not a repository host.
            host = null;
            path = "/mnt/pgbackrest/repo";
          };
        }
        // extraRepos;
      settings.start-fast = true;
    };
    environment.etc = lib.optionalAttrs (environmentFileText != null) {
      ${lib.removePrefix "/etc/" environmentFile} = {
        text = environmentFileText;
        mode = "0400";
        user = "postgres";
      };
    };

    services.postgresql-preseed = {
      enable = true;
      inherit onNoBackup;
      datasets."tank/services/postgresql" = {
        mountpoint = "/var/lib/postgresql/17";
        properties.recordsize = "16K";
      };
      pgbackrest = {
        repos = repoOrder;
        repoWait = "10s";
        inherit environmentFile;
      };
      verify.sql = verifySql;
      metrics.textfile = "/var/lib/prometheus-node-exporter/pg-preseed.prom";
    };
  };
}
