# The twins of the nixpkgs modules this project's module and its VM scenarios meet, as one list
# of modules, and the stand-in package set they are evaluated with. Each twin says which nixpkgs
# file it follows; docs/testing.md ("The twins") lists the facts and where they were read.
{lib}: {
  pkgs = import ./pkgs.nix {inherit lib;};
  modules = [
    ./base.nix
    ./systemd.nix
    ./zfs.nix
    ./postgresql.nix
    ./pgbackrest.nix
    ./servers.nix
  ];
}
