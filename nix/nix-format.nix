# The project's Nix formatter (alejandra's style at the version Cargo.lock pins): the flake's
# `formatter`, and what CI runs with --check, so the two never disagree.
{
  lib,
  rustPlatform,
}:
rustPlatform.buildRustPackage {
  pname = "nix-format";
  inherit (import ./workspace.nix {inherit lib;}) version src cargoLock;
  cargoBuildFlags = ["--package" "nix-format"];
  doCheck = false;
  meta.mainProgram = "nix-format";
}
