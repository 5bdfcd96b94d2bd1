{
  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";
    postgresql-preseed = {
      # Wherever you get postgresql-preseed from (a fork, a mirror, a local checkout: path:/src/…).
      url = "github:OWNER/postgresql-preseed";
      inputs.nixpkgs.follows = "nixpkgs";
    };
  };

  outputs = {nixpkgs, ...} @ inputs: {
    nixosConfigurations.db = nixpkgs.lib.nixosSystem {
      system = "x86_64-linux";
      # Makes `inputs` an argument of every module, so configuration.nix can import the module.
      specialArgs = {inherit inputs;};
      modules = [./configuration.nix];
    };
  };
}
