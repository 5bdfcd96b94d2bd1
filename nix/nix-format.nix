# The project's Nix formatter (alejandra's style at the version Cargo.lock pins): the flake's
# `formatter`, and what CI runs with --check, so the two never disagree.
{
  lib,
  rustPlatform,
}:
rustPlatform.buildRustPackage {
  pname = "nix-format";
  version = (lib.importTOML ../Cargo.toml).workspace.package.version;
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [../Cargo.toml ../Cargo.lock ../clippy.toml ../crates];
  };
  cargoLock.lockFile = ../Cargo.lock;
  cargoBuildFlags = ["--package" "nix-format"];
  doCheck = false;
  meta.mainProgram = "nix-format";
}
