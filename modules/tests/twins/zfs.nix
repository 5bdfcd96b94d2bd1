# Twin of nixpkgs' ZFS support (nixos/modules/tasks/filesystems/zfs.nix, nixos-25.11) as far as
# the module and the scenarios depend on it: boot.zfs.enabled (read-only, from the supported
# filesystems), the package, the pools imported at boot (zfs-import-<pool>.service, never
# mounting), and NixOS' additions to the units OpenZFS ships (zfs-mount.service runs
# `zfs mount -a`, Before=local-fs.target).
{
  config,
  lib,
  pkgs,
  ...
}: let
  inherit (lib) mkOption types;
  cfg = config.boot.zfs;
  zfsPools = lib.unique (
    map (fs: builtins.head (lib.splitString "/" fs.device)) (builtins.filter (fs: fs.fsType == "zfs" && !fs.neededForBoot) (builtins.attrValues config.fileSystems))
    ++ cfg.extraPools
  );
in {
  options.boot.zfs = {
    enabled = mkOption {
      type = types.bool;
      readOnly = true;
      default = (config.boot.initrd.supportedFilesystems.zfs or false) || (config.boot.supportedFilesystems.zfs or false);
    };
    package = mkOption {
      type = types.package;
      default = pkgs.zfs;
    };
    extraPools = mkOption {
      type = types.listOf types.str;
      default = [];
    };
    devNodes = mkOption {
      type = types.path;
      default = "/dev/disk/by-id";
    };
    forceImportRoot = mkOption {
      type = types.bool;
      default = true;
    };
    forceImportAll = mkOption {
      type = types.bool;
      default = false;
    };
  };

  config = lib.mkIf cfg.enabled {
    environment.systemPackages = [cfg.package];
    systemd.packages = [cfg.package];
    systemd.packagedUnits = ["zfs-mount.service" "zfs-share.service" "zfs-zed.service" "zfs-import.target" "zfs.target"];
    systemd.targets.zfs-import.wantedBy = ["zfs.target"];
    systemd.targets.zfs.wantedBy = ["multi-user.target"];
    systemd.services =
      lib.genAttrs ["zfs-mount" "zfs-share" "zfs-zed"] (_: {
        after = ["systemd-modules-load.service"];
        wantedBy = ["zfs.target"];
      })
      // lib.listToAttrs (map (pool:
        lib.nameValuePair "zfs-import-${pool}" {
          description = "Import ZFS pool \"${pool}\"";
          unitConfig.DefaultDependencies = false;
          # As nixpkgs: waits for udev to settle (wanted, not required), so that the pool's
          # devices are there; required by zfs-import.target.
          wants = ["systemd-udev-settle.service"];
          requiredBy = ["zfs-import.target"];
          after = ["systemd-udev-settle.service" "systemd-modules-load.service" "systemd-ask-password-console.service"];
          before = ["shutdown.target" "zfs-import.target"];
          conflicts = ["shutdown.target"];
          path = [cfg.package];
          serviceConfig = {
            Type = "oneshot";
            RemainAfterExit = true;
          };
          # Behaves as nixpkgs' import unit: up to 60 tries a second apart, importing (without
          # mounting: zfs-mount.service mounts) as soon as `zpool import` lists the pool ONLINE;
          # then one more attempt whatever its state (a degraded pool); the unit fails when the
          # pool is still not imported.
          script = ''
            imported() { zpool list "${pool}" >/dev/null 2>&1; }
            online() {
              zpool import -d "${cfg.devNodes}" 2>/dev/null |
                sed -n '/^ *pool: ${pool}$/,/^ *config:/p' | grep -q 'state: ONLINE'
            }
            import_pool() { zpool import -d "${cfg.devNodes}" -N ${lib.optionalString cfg.forceImportAll "-f"} "${pool}"; }
            if ! imported; then
              for _ in $(seq 60); do
                if online && import_pool; then break; fi
                sleep 1
              done
              imported || import_pool
            fi
            imported
          '';
        })
      zfsPools);
  };
}
