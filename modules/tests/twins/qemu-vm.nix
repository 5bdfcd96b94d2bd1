# Twin of nixpkgs' nixos/modules/virtualisation/qemu-vm.nix (nixos-25.11) as far as the VM
# scenarios depend on it: in a test VM, `fileSystems` is replaced wholesale by
# `virtualisation.fileSystems` (mkVMOverride), which always holds the VM's own root; empty disks
# appear as /dev/vdb, /dev/vdc, … in order.
{
  lib,
  options,
  config,
  ...
}: let
  inherit (lib) mkOption types;
in {
  options.virtualisation = {
    fileSystems = options.fileSystems;
    emptyDiskImages = mkOption {
      type = types.listOf types.ints.positive;
      default = [];
    };
    memorySize = mkOption {
      type = types.ints.positive;
      default = 1024;
    };
    cores = mkOption {
      type = types.ints.positive;
      default = 1;
    };
  };
  config = {
    virtualisation.fileSystems."/" = {
      device = "/dev/disk/by-label/nixos";
      fsType = "ext4";
    };
    fileSystems = lib.mkIf (config.virtualisation.fileSystems != {}) (lib.mkVMOverride config.virtualisation.fileSystems);
  };
}
