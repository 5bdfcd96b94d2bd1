# Pure helpers of the module, kept apart so the eval tests can call them directly.
{lib}: let
  inherit (builtins) attrNames head isInt isString length;

  stripSlash = path:
    if path != "/" && lib.hasSuffix "/" path
    then stripSlash (lib.removeSuffix "/" path)
    else path;
in rec {
  # "16" from services.postgresql.package (its version is "16.4" or "16beta1").
  pgMajor = pg: lib.versions.major (pg.package.version or "16");

  # { dataset = name; } for the declared dataset mounted at dataDir, else null.
  requireMountDefault = datasets: dataDir: let
    at = lib.filterAttrs (_: d: stripSlash d.mountpoint == stripSlash dataDir) datasets;
  in
    if at == {}
    then null
    else {
      dataset = head (attrNames at);
      fstype = null;
    };

  # A repository reference (a number, or a name of services.pgbackrest.repos) as pg-preseed's
  # config writes it: { number; name; }. `names` are the attribute names of
  # services.pgbackrest.repos, which that module numbers 1, 2, … in alphabetical order.
  repoEntry = names: repo:
    if isInt repo
    then {
      number = repo;
      name =
        if repo <= length names
        then builtins.elemAt names (repo - 1)
        else null;
    }
    else {
      number = let
        index = lib.lists.findFirstIndex (n: n == repo) null names;
      in
        if index == null
        then 0
        else index + 1;
      name = repo;
    };

  # Names in `repos` that services.pgbackrest does not define.
  unknownRepoNames = names: repos: builtins.filter (r: isString r && !(builtins.elem r names)) repos;

  # Everything this configuration mounts, as { mountpoint; what; declaredAt; }: our datasets,
  # fileSystems entries, and disko's ZFS datasets (when disko is imported).
  claims = {
    datasets ? {},
    fileSystems ? {},
    disko ? null,
  }:
    lib.mapAttrsToList (name: d: {
      mountpoint = stripSlash d.mountpoint;
      what = name;
      declaredAt = ''services.postgresql-preseed.datasets."${name}"'';
    })
    datasets
    ++ lib.mapAttrsToList (key: fs: {
      mountpoint = stripSlash (fs.mountPoint or key);
      what =
        if (fs.device or null) != null
        then fs.device
        else if (fs.label or null) != null
        then "label ${fs.label}"
        else "fileSystems.\"${key}\"";
      declaredAt = ''fileSystems."${key}"'';
    })
    fileSystems
    ++ lib.optionals (disko != null) (lib.concatLists (lib.mapAttrsToList (
      pool: zpool:
        lib.concatLists (lib.mapAttrsToList (
          name: ds: let
            fromOptions = ds.options.mountpoint or null;
            mountpoint =
              if (ds.mountpoint or null) != null
              then ds.mountpoint
              else if fromOptions != null && lib.hasPrefix "/" fromOptions
              then fromOptions
              else null;
          in
            lib.optional ((ds.type or "zfs_fs") == "zfs_fs" && mountpoint != null) {
              mountpoint = stripSlash mountpoint;
              what = "${pool}/${name}";
              declaredAt = ''disko.devices.zpool."${pool}".datasets."${name}"'';
            }
        ) (zpool.datasets or {}))
    ) (disko.zpool or {})));

  # Mountpoints claimed by more than one distinct thing: [{ mountpoint; claims; }].
  conflicts = allClaims: let
    byMountpoint = lib.groupBy (c: c.mountpoint) allClaims;
    distinct = cs: lib.unique (map (c: c.what) cs);
  in
    lib.mapAttrsToList (mountpoint: cs: {
      inherit mountpoint;
      claims = cs;
    })
    (lib.filterAttrs (_: cs: length (distinct cs) > 1) byMountpoint);

  # The assertion message for one conflict: every claimant, where it is declared, and the fix.
  conflictMessage = conflict: let
    lines = map (c: "  - ${c.what} (${c.declaredAt})") conflict.claims;
  in ''
    services.postgresql-preseed: ${toString (length (lib.unique (map (c: c.what) conflict.claims)))} filesystems claim the mountpoint ${conflict.mountpoint}:
    ${lib.concatStringsSep "\n" lines}
    Mounted together they stack, and the lower one is hidden (the incident this module exists
    for). Keep one declaration for ${conflict.mountpoint} and remove or re-point the others.'';

  inherit stripSlash;
}
