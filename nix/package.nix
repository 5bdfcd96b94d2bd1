{
  lib,
  rustPlatform,
}:
rustPlatform.buildRustPackage {
  pname = "pg-preseed";
  inherit (import ./workspace.nix {inherit lib;}) version src cargoLock;

  cargoBuildFlags = ["--package" "pg-preseed"];
  # Tier 1 only: parsers, the decision table, config validation. The real-system tests (tier 2)
  # need root, PostgreSQL, pgBackRest and mounts; they sit behind the `real-system` cargo
  # feature, which stays off here, so the sandbox excludes them explicitly.
  cargoTestFlags = ["--package" "pg-preseed"];

  postInstall = ''
    install -Dm644 -t $out/share/doc/pg-preseed ${../docs}/*.md
  '';

  meta = {
    description = "Restore PostgreSQL from pgBackRest when its data directory is empty, and refuse when that is unsafe";
    license = lib.licenses.mit;
    platforms = lib.platforms.linux;
    mainProgram = "pg-preseed";
  };
}
