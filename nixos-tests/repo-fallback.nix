# Repository 1 (posix, on the NFS share) is unreachable: the restore comes from repository 2, an
# S3 object store (MinIO behind TLS) — real S3 traffic.
{common}: {pkgs, ...}: let
  # A self-signed certificate for the S3 endpoint `backup`; pgBackRest verifies it against itself.
  certs = pkgs.runCommand "minio-certs" {nativeBuildInputs = [pkgs.openssl];} ''
    mkdir $out
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=backup \
      -addext subjectAltName=DNS:backup -keyout $out/private.key -out $out/public.crt
  '';
in {
  name = "postgresql-preseed-repo-fallback";
  globalTimeout = 1800;
  nodes = {
    backup = {pkgs, ...}: {
      imports = [common.backup];
      services.minio = {
        enable = true;
        listenAddress = ":9000";
        certificatesDir = certs;
        rootCredentialsFile = pkgs.writeText "minio-credentials" ''
          MINIO_ROOT_USER=preseedkey
          MINIO_ROOT_PASSWORD=preseedsecret
        '';
      };
      environment.systemPackages = [pkgs.curl];
    };
    db = common.db {
      onNoBackup = "initdb";
      verifySql = ["SELECT count(*) > 0 FROM pg_class"];
      # services.pgbackrest numbers repositories alphabetically: nfs = repo1, s3 = repo2.
      repoOrder = ["nfs" "s3"];
      # Test credentials, in a file only postgres can read, outside the store (the option takes a path
      # string, never a store path).
      environmentFile = "/etc/pgbackrest/s3.env";
      environmentFileText = ''
        PGBACKREST_REPO2_S3_KEY=preseedkey
        PGBACKREST_REPO2_S3_KEY_SECRET=preseedsecret
      '';
      extraRepos.s3 = {
        type = "s3";
        path = "/pgbackrest";
        s3-bucket = "pgbackrest";
        s3-endpoint = "backup";
        s3-region = "us-east-1";
        s3-uri-style = "path";
        storage-port = 9000;
        storage-ca-file = "${certs}/public.crt";
      };
    };
  };
  testScript = common.testScript "repo-fallback";
}
