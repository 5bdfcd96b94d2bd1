{
  lib,
  rustPlatform,
}:
rustPlatform.buildRustPackage {
  pname = "pg-preseed";
  version = (lib.importTOML ../Cargo.toml).workspace.package.version;

  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../clippy.toml
      ../crates
    ];
  };
  cargoLock.lockFile = ../Cargo.lock;

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
