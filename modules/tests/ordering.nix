# A model of systemd's ordering graph at boot, built from the unit files the twins render plus
# the orderings systemd and OpenZFS give their own units and the dependencies systemd adds
# implicitly (systemd.unit(5), systemd.exec(5) "Implicit Dependencies", src/core/unit.c; facts in
# docs/testing.md). It finds ordering cycles, which systemd "breaks" at boot by deleting a job —
# silently, so PostgreSQL may never start. It is a model: tier 4 boots the same units on systemd.
{lib}: rendered: let
  inherit (builtins) attrNames concatLists elem filter hasAttr;

  # What systemd and OpenZFS ship, as far as the units around PostgreSQL are concerned:
  # { after; before; defaultDependencies; kind; }.
  shipped = {
    "local-fs-pre.target" = {defaults = false;};
    "local-fs.target" = {
      defaults = false;
      after = ["local-fs-pre.target"];
    };
    # /run's mount, as systemd gives a mount unit from /proc/self/mountinfo its default
    # dependencies (src/core/mount.c excludes only /, /usr and below /run/initramfs, /proc, /sys,
    # /dev): after local-fs-pre.target, before local-fs.target. RuntimeDirectory= requires it.
    "run.mount" = {
      defaults = false;
      after = ["local-fs-pre.target"];
      before = ["local-fs.target"];
    };
    "systemd-remount-fs.service" = {
      defaults = false;
      before = ["local-fs-pre.target" "local-fs.target"];
    };
    "systemd-modules-load.service" = {
      defaults = false;
      before = ["sysinit.target"];
    };
    "systemd-journald.socket" = {
      defaults = false;
      before = ["sockets.target"];
    };
    "systemd-journald.service" = {
      defaults = false;
      after = ["systemd-journald.socket"];
      before = ["sysinit.target"];
    };
    "systemd-tmpfiles-setup.service" = {
      defaults = false;
      after = ["local-fs.target" "systemd-journald.service"];
      before = ["sysinit.target"];
    };
    "systemd-ask-password-console.service" = {
      defaults = false;
      after = ["systemd-vconsole-setup.service"];
    };
    "systemd-vconsole-setup.service" = {defaults = false;};
    "sysinit.target" = {
      defaults = false;
      after = ["local-fs.target" "swap.target"];
    };
    "swap.target" = {defaults = false;};
    "sockets.target" = {defaults = false;};
    "basic.target" = {
      defaults = false;
      after = ["sysinit.target" "sockets.target" "paths.target" "slices.target" "timers.target"];
    };
    "paths.target" = {defaults = false;};
    "slices.target" = {defaults = false;};
    "timers.target" = {defaults = false;};
    "network.target" = {defaults = false;};
    "network-online.target" = {
      defaults = false;
      after = ["network.target"];
    };
    "remote-fs-pre.target" = {defaults = false;};
    "remote-fs.target" = {
      defaults = false;
      after = ["remote-fs-pre.target"];
    };
    "multi-user.target" = {
      defaults = false;
      after = ["basic.target"];
    };
    "shutdown.target" = {defaults = false;};
    # OpenZFS' units (etc/systemd/system/*.in, 2.3).
    "zfs-import.target" = {};
    "zfs-mount.service" = {
      defaults = false;
      after = ["zfs-import.target" "systemd-remount-fs.service"];
      before = ["local-fs.target"];
    };
    "zfs-share.service" = {after = ["zfs-mount.service"];};
    "zfs-zed.service" = {};
    "zfs.target" = {};
  };

  fileOf = name: rendered.${name}.text or "";
  unitsOf = builtins.filter (n: !(lib.hasInfix "/" n) || lib.hasSuffix ".d/overrides.conf" n) (attrNames rendered);
  unitName = file: lib.removeSuffix ".d/overrides.conf" file;
  renderedUnits = lib.unique (map unitName unitsOf);

  keyValues = text: key:
    concatLists (map (line: lib.splitString " " (lib.removePrefix "${key}=" line))
      (filter (lib.hasPrefix "${key}=") (lib.splitString "\n" text)));
  textOf = unit: fileOf unit + fileOf "${unit}.d/overrides.conf";
  has = text: line: elem line (lib.splitString "\n" text);

  # The `.wants/` and `.requires/` links: Wants=/Requires= of the unit that owns the directory.
  pulled = unit:
    map (n: lib.last (lib.splitString "/" n))
    (filter (n: lib.hasPrefix "${unit}.wants/" n || lib.hasPrefix "${unit}.requires/" n) (attrNames rendered));

  kind = unit: lib.last (lib.splitString "." unit);

  edgesOf = unit: let
    text = textOf unit;
    base = shipped.${unit} or {};
    defaults =
      if hasAttr unit shipped && !(hasAttr unit rendered)
      then base.defaults or true
      else !(has text "DefaultDependencies=false") && (base.defaults or true);
    after =
      (base.after or [])
      ++ keyValues text "After"
      # Implicit: PrivateTmp= (connected) orders after systemd-tmpfiles-setup.service.
      ++ lib.optional (has text "PrivateTmp=true" || has text "PrivateTmp=yes") "systemd-tmpfiles-setup.service"
      # Implicit: StateDirectory=, CacheDirectory=, LogsDirectory= order after remount-fs.
      ++ lib.optional (builtins.any (k: keyValues text k != []) ["StateDirectory" "CacheDirectory" "LogsDirectory"]) "systemd-remount-fs.service"
      # Implicit: RuntimeDirectory= is RequiresMountsFor=/run/<dir>: after /run's mount.
      ++ lib.optional (keyValues text "RuntimeDirectory" != []) "run.mount"
      # Default dependencies of services and timers: after basic.target (and sysinit.target).
      ++ lib.optionals (defaults && elem (kind unit) ["service" "timer" "path" "socket"]) ["sysinit.target" "basic.target"]
      # Default dependencies of targets: after what they want or require, unless ordered.
      ++ lib.optionals (defaults && kind unit == "target") (filter (u: !(elem unit (keyValues (textOf u) "After"))) (keyValues text "Wants" ++ keyValues text "Requires" ++ pulled unit));
    before =
      (base.before or [])
      ++ keyValues text "Before"
      ++ lib.optional defaults "shutdown.target";
  in {inherit after before;};

  units = lib.unique (renderedUnits ++ attrNames shipped);
  edges = lib.genAttrs units edgesOf;
  # a must start before b.
  isBefore = a: b: elem a (edges.${b}.after or []) || elem b (edges.${a}.before or []);
  sorted = lib.toposort isBefore units;
in {
  cycle = sorted.cycle or null;
  loops = sorted.loops or null;
  # The start order systemd would follow (when there is no cycle).
  order = sorted.result or null;
  inherit edges;
  position = unit: let
    order = sorted.result or [];
  in
    lib.lists.findFirstIndex (u: u == unit) null order;
}
