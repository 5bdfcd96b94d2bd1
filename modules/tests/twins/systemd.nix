# Twin of NixOS' systemd units (nixos/lib/systemd-lib.nix, systemd-unit-options.nix,
# modules/system/boot/systemd.nix and service.nix at nixos-25.11; facts in docs/testing.md,
# "The twins"): the same options with the same types, defaults and merging, and the unit files
# NixOS would write for them, so the eval tests can read the rendered text and tier 4 can boot it.
{
  config,
  lib,
  pkgs,
  ...
}: let
  inherit (lib) mkOption types;
  topConfig = config;

  # NixOS' `unitOption`: when any definition is a list, all are concatenated (in definition
  # order, so mkBefore lands first); other values must agree.
  unitOption = lib.mkOptionType {
    name = "systemd option";
    merge = loc: defs:
      if builtins.any (def: builtins.isList def.value) defs
      then lib.concatMap (def: lib.toList def.value) defs
      else lib.mergeEqualOption loc defs;
  };
  section = mkOption {
    type = types.attrsOf unitOption;
    default = {};
  };
  unitList = mkOption {
    type = types.listOf types.str;
    default = [];
  };

  # The options every unit kind has.
  commonOptions = {
    enable = mkOption {
      type = types.bool;
      default = true;
    };
    description = mkOption {
      type = types.singleLineStr;
      default = "";
    };
    documentation = unitList;
    requires = unitList;
    wants = unitList;
    upholds = unitList;
    after = unitList;
    before = unitList;
    bindsTo = unitList;
    partOf = unitList;
    conflicts = unitList;
    requisite = unitList;
    onFailure = unitList;
    onSuccess = unitList;
    wantedBy = unitList;
    requiredBy = unitList;
    upheldBy = unitList;
    unitConfig = section;
    restartTriggers = mkOption {
      type = types.listOf types.unspecified;
      default = [];
    };
    reloadTriggers = mkOption {
      type = types.listOf types.unspecified;
      default = [];
    };
    startLimitIntervalSec = mkOption {
      type = types.nullOr types.int;
      default = null;
    };
    startLimitBurst = mkOption {
      type = types.nullOr types.int;
      default = null;
    };
  };

  # What the common options contribute to [Unit] (systemd-lib.nix's unitConfig).
  commonUnitConfig = name: config: {
    unitConfig = lib.mkMerge [
      (lib.mkIf (config.description != "") {Description = config.description;})
      (lib.mkIf (config.documentation != []) {Documentation = toString config.documentation;})
      (lib.mkIf (config.requires != []) {Requires = toString config.requires;})
      (lib.mkIf (config.wants != []) {Wants = toString config.wants;})
      (lib.mkIf (config.upholds != []) {Upholds = toString config.upholds;})
      (lib.mkIf (config.after != []) {After = toString config.after;})
      (lib.mkIf (config.before != []) {Before = toString config.before;})
      (lib.mkIf (config.bindsTo != []) {BindsTo = toString config.bindsTo;})
      (lib.mkIf (config.partOf != []) {PartOf = toString config.partOf;})
      (lib.mkIf (config.conflicts != []) {Conflicts = toString config.conflicts;})
      (lib.mkIf (config.requisite != []) {Requisite = toString config.requisite;})
      (lib.mkIf (config.onFailure != []) {OnFailure = toString config.onFailure;})
      (lib.mkIf (config.onSuccess != []) {OnSuccess = toString config.onSuccess;})
      (lib.mkIf (config.startLimitIntervalSec != null) {StartLimitIntervalSec = config.startLimitIntervalSec;})
      (lib.mkIf (config.startLimitBurst != null) {StartLimitBurst = config.startLimitBurst;})
      (lib.mkIf (config.restartTriggers != []) {
        X-Restart-Triggers = "${pkgs.writeText "X-Restart-Triggers-${name}" (toString (lib.flatten config.restartTriggers))}";
      })
      (lib.mkIf (config.reloadTriggers != []) {
        X-Reload-Triggers = "${pkgs.writeText "X-Reload-Triggers-${name}" (toString (lib.flatten config.reloadTriggers))}";
      })
    ];
  };

  # A shell script for script/preStart/…: a store file run with `set -e`.
  jobScriptOf = name: text: pkgs.writeShellScriptBin "unit-script-${name}" "set -e\n${text}";
  jobScript = name: text: "${jobScriptOf name text}/bin/unit-script-${name}";

  serviceModule = types.submodule ({
    name,
    config,
    ...
  }: {
    options =
      commonOptions
      // {
        serviceConfig = section;
        environment = mkOption {
          type = types.attrsOf (types.nullOr (types.oneOf [types.str types.path types.package]));
          default = {};
        };
        path = mkOption {
          type = types.listOf (types.oneOf [types.package types.str]);
          default = [];
        };
        script = mkOption {
          type = types.lines;
          default = "";
        };
        scriptArgs = mkOption {
          type = types.str;
          default = "";
        };
        preStart = mkOption {
          type = types.lines;
          default = "";
        };
        postStart = mkOption {
          type = types.lines;
          default = "";
        };
        reload = mkOption {
          type = types.lines;
          default = "";
        };
        preStop = mkOption {
          type = types.lines;
          default = "";
        };
        postStop = mkOption {
          type = types.lines;
          default = "";
        };
        restartIfChanged = mkOption {
          type = types.bool;
          default = true;
        };
        reloadIfChanged = mkOption {
          type = types.bool;
          default = false;
        };
        stopIfChanged = mkOption {
          type = types.bool;
          default = true;
        };
        # As in NixOS: the scripts made from script/preStart/…, so they are in the system.
        jobScripts = mkOption {
          type = types.listOf types.unspecified;
          default = [];
          internal = true;
        };
      };
    config = lib.mkMerge [
      (commonUnitConfig name config)
      {
        # NixOS' default path for every service, after the service's own.
        path = lib.mkAfter [pkgs.coreutils pkgs.findutils pkgs.gnugrep pkgs.gnused topConfig.systemd.package];
        environment.PATH = "${lib.makeBinPath config.path}:${lib.makeSearchPathOutput "bin" "sbin" config.path}";
      }
      (lib.mkIf (config.script != "") {
        jobScripts = [(jobScriptOf "${name}-start" config.script)];
        serviceConfig.ExecStart = jobScript "${name}-start" config.script + " " + config.scriptArgs;
      })
      (lib.mkIf (config.preStart != "") {
        jobScripts = [(jobScriptOf "${name}-pre-start" config.preStart)];
        serviceConfig.ExecStartPre = [(jobScript "${name}-pre-start" config.preStart)];
      })
      (lib.mkIf (config.postStart != "") {
        jobScripts = [(jobScriptOf "${name}-post-start" config.postStart)];
        serviceConfig.ExecStartPost = [(jobScript "${name}-post-start" config.postStart)];
      })
      (lib.mkIf (config.reload != "") {
        jobScripts = [(jobScriptOf "${name}-reload" config.reload)];
        serviceConfig.ExecReload = jobScript "${name}-reload" config.reload;
      })
      (lib.mkIf (config.preStop != "") {
        jobScripts = [(jobScriptOf "${name}-pre-stop" config.preStop)];
        serviceConfig.ExecStop = jobScript "${name}-pre-stop" config.preStop;
      })
      (lib.mkIf (config.postStop != "") {
        jobScripts = [(jobScriptOf "${name}-post-stop" config.postStop)];
        serviceConfig.ExecStopPost = jobScript "${name}-post-stop" config.postStop;
      })
    ];
  });

  simpleUnitModule = extra:
    types.submodule ({
      name,
      config,
      ...
    }: {
      options = commonOptions // extra;
      config = commonUnitConfig name config;
    });

  # systemd-lib.nix's attrsToSection: keys in attribute-name order, a list gives one line per
  # element, booleans are "true"/"false".
  toOption = x:
    if x == true
    then "true"
    else if x == false
    then "false"
    else toString x;
  attrsToSection = attrs:
    lib.concatStrings (lib.concatLists (lib.mapAttrsToList (
        name: value: map (x: "${name}=${toOption x}\n") (lib.toList value)
      )
      attrs));

  installSection = unit:
    lib.optionalString (unit.wantedBy != []) "\n[Install]\nWantedBy=${lib.concatStringsSep " " unit.wantedBy}\n";

  serviceText = unit: let
    env = unit.environment;
  in
    "[Unit]\n"
    + attrsToSection unit.unitConfig
    + "\n[Service]\n"
    + lib.concatMapStrings (n: lib.optionalString (env.${n} != null) "Environment=${builtins.toJSON "${n}=${env.${n}}"}\n") (builtins.attrNames env)
    + (
      if unit.reloadIfChanged
      then "X-ReloadIfChanged=true\n"
      else if !unit.restartIfChanged
      then "X-RestartIfChanged=false\n"
      else ""
    )
    + lib.optionalString (!unit.stopIfChanged) "X-StopIfChanged=false\n"
    + attrsToSection unit.serviceConfig
    + installSection unit;

  sectionText = sectionName: body: unit:
    "[Unit]\n" + attrsToSection unit.unitConfig + "\n[${sectionName}]\n" + attrsToSection body + installSection unit;

  enabled = lib.filterAttrs (_: u: u.enable);

  # Every unit file and dependency symlink NixOS would put in /etc/systemd/system, as
  # { "<unit>" = { text; }; "<target>.wants/<unit>" = { symlink = "<unit>"; }; }. Units a
  # package provides (systemd.packages) get the generated part as a drop-in instead.
  unitFiles = kind: render: units:
    lib.concatMapAttrs (name: unit: let
      file = "${name}.${kind}";
      links = suffix: targets: lib.listToAttrs (map (t: lib.nameValuePair "${t}.${suffix}/${file}" {symlink = file;}) targets);
    in
      {
        ${
          if builtins.elem file topConfig.systemd.packagedUnits
          then "${file}.d/overrides.conf"
          else file
        } = {
          text = render unit;
        };
      }
      // links "wants" unit.wantedBy
      // links "requires" unit.requiredBy
      // links "upholds" unit.upheldBy)
    (enabled units);
in {
  options.systemd = {
    package = mkOption {
      type = types.package;
      default = pkgs.systemd;
    };
    services = mkOption {
      type = types.attrsOf serviceModule;
      default = {};
    };
    targets = mkOption {
      type = types.attrsOf (simpleUnitModule {});
      default = {};
    };
    timers = mkOption {
      type = types.attrsOf (simpleUnitModule {
        timerConfig = section;
      });
      default = {};
    };
    paths = mkOption {
      type = types.attrsOf (simpleUnitModule {
        pathConfig = section;
      });
      default = {};
    };
    packages = mkOption {
      type = types.listOf types.package;
      default = [];
    };
    # Not a NixOS option: the unit files the packages in systemd.packages provide (NixOS reads
    # them from the packages; here each twin that adds a package names its units).
    packagedUnits = mkOption {
      type = types.listOf types.str;
      default = [];
      internal = true;
    };
    tmpfiles.rules = mkOption {
      type = types.listOf types.str;
      default = [];
    };
    # Not a NixOS option: the rendered files (for the eval tests and tier 4).
    rendered = mkOption {
      type = types.attrsOf types.anything;
      readOnly = true;
      internal = true;
    };
  };

  config.systemd.rendered =
    unitFiles "service" serviceText config.systemd.services
    // unitFiles "target" (u: "[Unit]\n" + attrsToSection u.unitConfig + installSection u) config.systemd.targets
    // unitFiles "timer" (u: sectionText "Timer" u.timerConfig u) config.systemd.timers
    // unitFiles "path" (u: sectionText "Path" u.pathConfig u) config.systemd.paths;
}
