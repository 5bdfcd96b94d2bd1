{
  description = "Restore PostgreSQL from pgBackRest when its data directory is empty, and refuse when that is unsafe";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs = {
    self,
    nixpkgs,
  }: let
    inherit (nixpkgs) lib;
    systems = ["x86_64-linux" "aarch64-linux"];
    forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
  in {
    packages = forAllSystems (pkgs: rec {
      pg-preseed = pkgs.callPackage ./nix/package.nix {};
      nix-format = pkgs.callPackage ./nix/nix-format.nix {};
      default = pg-preseed;
    });

    nixosModules.postgresql-preseed = {
      lib,
      pkgs,
      ...
    }: {
      imports = [./modules/postgresql-preseed.nix];
      services.postgresql-preseed = {
        package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        # The config is checked at build time, on the build platform (cross builds).
        checkPackage = lib.mkDefault (self.packages.${pkgs.stdenv.buildPlatform.system} or self.packages.${pkgs.stdenv.hostPlatform.system}).default;
      };
    };
    nixosModules.default = self.nixosModules.postgresql-preseed;

    checks = forAllSystems (pkgs: let
      inherit (pkgs.stdenv.hostPlatform) system;
      source = lib.fileset.toSource {
        root = ./.;
        fileset = lib.fileset.fileFilter (file: file.hasExt "nix") ./.;
      };
    in
      {
        package = self.packages.${system}.pg-preseed;

        module-eval = let
          failures = import ./modules/tests/eval.nix {inherit lib;};
        in
          pkgs.runCommand "postgresql-preseed-module-eval" {} (
            if failures == []
            then "touch $out"
            else throw "module eval tests failed: ${builtins.toJSON failures}"
          );

        # docs/options.md must be what nix/options-doc.nix renders from the module today.
        options-doc = pkgs.runCommand "postgresql-preseed-options-doc" {} ''
          diff -u ${./docs/options.md} ${pkgs.writeText "options.md" (import ./nix/options-doc.nix {inherit lib;})}
          touch $out
        '';

        format = pkgs.runCommand "postgresql-preseed-format" {} ''
          cd ${source}
          ${lib.getExe self.packages.${system}.nix-format} --check .
          ${lib.getExe pkgs.deadnix} --fail .
          touch $out
        '';
      }
      # The disaster-recovery scenarios as NixOS VM tests (they need KVM): vm-<scenario>.
      // import ./nixos-tests {
        inherit pkgs;
        module = self.nixosModules.postgresql-preseed;
      });

    formatter = forAllSystems (pkgs: self.packages.${pkgs.stdenv.hostPlatform.system}.nix-format);

    devShells = forAllSystems (pkgs: {
      default = pkgs.mkShell {
        packages = with pkgs; [
          cargo
          rustc
          clippy
          rustfmt
          cargo-nextest
          postgresql
          pgbackrest
          deadnix
          self.packages.${pkgs.stdenv.hostPlatform.system}.nix-format
        ];
      };
    });
  };
}
