# Twins of the two servers the VM scenarios' repository host runs, as far as the scenarios use
# them: nixpkgs' services.nfs.server (nixos/modules/services/network-filesystems/nfsd.nix: the
# exports file, nfs-server.service from nfs-utils) and services.minio
# (nixos/modules/services/web-servers/minio.nix: minio.service, skipped while its credentials
# file is missing), nixos-25.11.
{
  config,
  lib,
  pkgs,
  ...
}: let
  inherit (lib) mkOption types;
  nfs = config.services.nfs.server;
  minio = config.services.minio;
in {
  options.services.nfs.server = {
    enable = lib.mkEnableOption "the kernel's NFS server";
    exports = mkOption {
      type = types.lines;
      default = "";
    };
  };
  options.services.minio = {
    enable = lib.mkEnableOption "Minio Object Storage";
    listenAddress = mkOption {
      type = types.str;
      default = ":9000";
    };
    consoleAddress = mkOption {
      type = types.str;
      default = ":9001";
    };
    dataDir = mkOption {
      type = types.listOf (types.either types.path types.str);
      default = ["/var/lib/minio/data"];
    };
    configDir = mkOption {
      type = types.str;
      default = "/var/lib/minio/config";
    };
    certificatesDir = mkOption {
      type = types.either types.path types.str;
      default = "/var/lib/minio/certs";
    };
    region = mkOption {
      type = types.str;
      default = "us-east-1";
    };
    rootCredentialsFile = mkOption {
      type = types.nullOr (types.either types.path types.str);
      default = null;
    };
  };

  config = lib.mkMerge [
    (lib.mkIf nfs.enable {
      environment.etc.exports.text = nfs.exports;
      environment.systemPackages = [pkgs.nfs-utils];
      systemd.packages = [pkgs.nfs-utils];
      systemd.packagedUnits = ["nfs-server.service"];
      systemd.services.nfs-server.wantedBy = ["multi-user.target"];
    })
    (lib.mkIf minio.enable {
      systemd.tmpfiles.rules = ["d ${minio.configDir} 0750 minio minio - -"] ++ map (dir: "d ${dir} 0750 minio minio - -") minio.dataDir;
      system.extraDependencies = [pkgs.minio] ++ lib.filter builtins.isAttrs [minio.certificatesDir minio.rootCredentialsFile];
      users.users.minio = {
        group = "minio";
        isSystemUser = true;
      };
      users.groups.minio = {};
      systemd.services.minio = {
        description = "Minio Object Storage";
        after = ["network-online.target"];
        wants = ["network-online.target"];
        wantedBy = ["multi-user.target"];
        unitConfig.ConditionPathExists = lib.mkIf (minio.rootCredentialsFile != null) "${minio.rootCredentialsFile}";
        environment.MINIO_REGION = minio.region;
        serviceConfig = {
          ExecStart = "${pkgs.minio}/bin/minio server --json --address ${minio.listenAddress} --console-address ${minio.consoleAddress} --config-dir=${minio.configDir} --certs-dir=${minio.certificatesDir} ${toString minio.dataDir}";
          Type = "simple";
          User = "minio";
          Group = "minio";
          LimitNOFILE = 65536;
          EnvironmentFile = lib.mkIf (minio.rootCredentialsFile != null) "${minio.rootCredentialsFile}";
        };
      };
    })
  ];
}
