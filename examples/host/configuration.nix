{
  inputs,
  pkgs,
  ...
}: {
  imports = [inputs.postgresql-preseed.nixosModules.default];

  boot.supportedFilesystems = ["zfs"];
  networking.hostId = "8425e349";

  # The backup share is a mount of its own: when it is missing, so is the repository, and
  # pg-preseed refuses instead of seeing an empty one.
  fileSystems."/mnt/nas" = {
    device = "nas.lan:/export/backups";
    fsType = "nfs";
    options = ["nofail" "x-systemd.mount-timeout=30s"];
  };

  services.postgresql = {
    enable = true;
    package = pkgs.postgresql_17;
  };

  services.pgbackrest = {
    enable = true;
    # A path on the share (host = null: not a repository host). Not named `localhost`: nixpkgs
    # creates that repository's path at activation, on the root filesystem if the share is not
    # mounted yet.
    repos.nas = {
      host = null;
      path = "/mnt/nas/pgbackrest";
    };
  };

  services.postgresql-preseed = {
    enable = true;
    # Created before ZFS mounts it; PGDATA must be on it (requireMount follows).
    datasets."tank/services/postgresql".mountpoint = "/var/lib/postgresql/17";
    # Once after a restore has been verified, never on a normal boot: fresh statistics, and the
    # application's password from a secret (read by psql from the environment, never in argv).
    postRestore = {
      sql = ["ANALYZE"];
      script = ''
        psql -v ON_ERROR_STOP=1 <<'SQL'
        \getenv app_password APP_PASSWORD
        ALTER ROLE app PASSWORD :'app_password';
        SQL
      '';
      environmentFile = "/run/secrets/post-restore.env";
    };
  };
}
