# Stand-ins for the nixpkgs packages and builders the module, the twins and the VM scenarios
# use. Nothing is built: a stand-in has a store path, a version and what the module reads of it.
# Builders keep what they would write (`text`, `files`), so tier 4 (vm/) can materialise them in
# a guest; `guest` says which program of the guest a package stands for there.
{lib}: let
  hashOf = s: builtins.substring 0 32 (builtins.hashString "sha256" s);

  # A store object: `files` maps paths inside it ("" for a single file) to { text; executable; }.
  storeObject = {
    name,
    version ? null,
    files ? {},
    guest ? null,
    extra ? {},
  }: let
    fullName =
      if version == null
      then name
      else "${name}-${version}";
  in
    {
      type = "derivation";
      name = fullName;
      pname = name;
      outPath = "/nix/store/${hashOf (builtins.toJSON {inherit fullName files;})}-${fullName}";
      inherit files guest;
      meta.mainProgram = name;
    }
    // lib.optionalAttrs (version != null) {inherit version;}
    // extra;

  file = text: {
    "" = {
      inherit text;
      executable = false;
    };
  };
  script = text: {
    "" = {
      inherit text;
      executable = true;
    };
  };

  # A package standing for a program of the guest (tier 4 links `guest` in as its bin/).
  package = name: version: guest: extra:
    storeObject {
      inherit name version guest extra;
    };

  mkPostgresql = major: minor: let
    self = package "postgresql" "${toString major}.${toString minor}" "/usr/lib/postgresql/${toString major}/bin" {
      psqlSchema = toString major;
      withJIT = self;
      withoutJIT = self;
      withPackages = _: self;
      jitSupport = false;
    };
  in
    self;

  shell = "${package "bash" "5.3" "/usr/bin" {}}/bin/bash";
in rec {
  inherit storeObject;

  # The same guest programs at one store path each.
  bash = package "bash" "5.3" "/usr/bin" {};
  coreutils = package "coreutils" "9.7" "/usr/bin" {};
  findutils = package "findutils" "4.10.0" "/usr/bin" {};
  gnugrep = package "gnugrep" "3.12" "/usr/bin" {};
  gnused = package "gnused" "4.9" "/usr/bin" {};
  systemd = package "systemd" "257.9" "/usr/bin" {};
  sudo = package "sudo" "1.9.17" "/usr/bin" {};
  openssh = package "openssh" "10.0p2" "/usr/bin" {};
  openssl = package "openssl" "3.5.4" "/usr/bin" {};
  curl = package "curl" "8.14.1" "/usr/bin" {};
  parted = package "parted" "3.6" "/usr/sbin" {};
  nfs-utils = package "nfs-utils" "2.8.3" "/usr/sbin" {};
  minio = package "minio" "2025-10-15" "/usr/local/bin" {};
  zfs = package "zfs" "2.3.4" "/usr/sbin" {};
  pgbackrest = package "pgbackrest" "2.55.1" "/usr/bin" {};
  deadnix = package "deadnix" "1.3.1" null {};
  postgresql_15 = mkPostgresql 15 14;
  postgresql_16 = mkPostgresql 16 10;
  postgresql_17 = mkPostgresql 17 6;
  postgresql_18 = mkPostgresql 18 0;
  postgresql = postgresql_17;

  runtimeShell = shell;

  writeText = name: text:
    storeObject {
      inherit name;
      files = file text;
    };
  writeTextDir = path: text:
    storeObject {
      name = baseNameOf path;
      files.${path} = {
        inherit text;
        executable = false;
      };
    };
  writeShellScript = name: text:
    storeObject {
      inherit name;
      files = script "#!${shell}\n${text}";
    };
  writeShellScriptBin = name: text:
    storeObject {
      inherit name;
      files."bin/${name}" = {
        text = "#!${shell}\n${text}";
        executable = true;
      };
    };
  # runCommand's builder cannot run here: what it would produce is recorded (`env`, `script`)
  # for tier 4, which re-does it on the host (vm/).
  runCommand = name: env: script:
    storeObject {
      inherit name;
      extra = {inherit env script;};
    };
  formats.ini = {listsAsDuplicateKeys ? false, ...}: {
    type = lib.types.attrsOf (lib.types.attrsOf lib.types.anything);
    generate = name: value:
      writeText name (lib.generators.toINI {inherit listsAsDuplicateKeys;} value);
  };

  testers.runNixOSTest = test: test;

  # A native x86_64-linux build unless a test says otherwise.
  stdenv = let
    platform = {
      system = "x86_64-linux";
      canExecute = other: other.system == "x86_64-linux";
    };
  in {
    hostPlatform = platform;
    buildPlatform = platform;
  };

  inherit lib;
}
