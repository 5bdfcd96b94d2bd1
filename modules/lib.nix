# Pure helpers of the module, kept apart so the eval tests can call them directly.
{lib}: let
  inherit (builtins) elem filter head isInt isString length;
in rec {
  # "/var/lib/postgresql/16" from "/var/lib//postgresql/16/" or "/var/lib/./postgresql/16": one
  # spelling per path, so paths compare, prefix-match and land in unit files the same way.
  normalizePath = path: let
    parts = filter (p: p != "" && p != ".") (lib.splitString "/" path);
  in
    "/" + lib.concatStringsSep "/" parts;

  # Whether `path` is `dir` or below it (both normalised).
  isAtOrBelow = dir: path: dir == "/" || path == dir || lib.hasPrefix "${dir}/" path;

  # The paths this module writes into unit files, tmpfiles rules and the config: absolute, no
  # "..", and only characters that mean nothing to systemd's unit-file parser (spaces, quotes,
  # `%` specifiers, `$` expansion), to tmpfiles or to a shell. The engine checks the same.
  safePathPattern = "/[A-Za-z0-9._/@+:,=~-]*";
  isSafePath = path:
    builtins.match safePathPattern path != null && !(elem ".." (lib.splitString "/" path));
  safePath =
    lib.types.addCheck (lib.types.strMatching safePathPattern) isSafePath
    // {
      description = "absolute path (letters, digits and ._/@+:,=~- only, no \"..\")";
    };

  # "16" from a PostgreSQL package (its version is "16.4" or "16beta1").
  pgMajor = package: lib.versions.major package.version;

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

  # What is wrong with a repository list, as sentences (empty when nothing is).
  # `names`: services.pgbackrest's repository names when that module is enabled, else null.
  repoProblems = names: repos: let
    known = names != null;
    unknownNames = filter (r: isString r && !(known && elem r names)) repos;
    outOfRange = filter (r: isInt r && known && r > length names) repos;
    numbers = map (r:
      (repoEntry (
          if known
          then names
          else []
        )
        r)
      .number)
    repos;
    duplicates = lib.unique (filter (n: n != 0 && lib.count (m: m == n) numbers > 1) numbers);
  in
    lib.optional (repos == [] && known && length names > 1)
    "services.pgbackrest defines several repositories (${lib.concatStringsSep ", " names}); say in which order to try them: services.postgresql-preseed.pgbackrest.repos = [ ${lib.concatMapStringsSep " " (n: ''"${n}"'') names} ]; (services.pgbackrest numbers them alphabetically: ${lib.concatStringsSep ", " (lib.imap1 (i: n: "repo${toString i} = ${n}") names)})."
    ++ lib.optional (repos == [] && !(known && length names > 1))
    "services.postgresql-preseed.pgbackrest.repos is empty: name at least one repository to restore from (a number such as 1 for repo1${lib.optionalString known ", or a name of services.pgbackrest.repos"})."
    ++ lib.optional (unknownNames != [])
    "services.postgresql-preseed.pgbackrest.repos names ${lib.concatStringsSep ", " unknownNames}, which services.pgbackrest.repos does not define (it defines: ${
      if !known
      then "nothing: services.pgbackrest is not enabled, so write repository numbers such as 1 for repo1"
      else if names == []
      then "none"
      else lib.concatStringsSep ", " names
    })."
    ++ lib.optional (outOfRange != [])
    "services.postgresql-preseed.pgbackrest.repos lists repository number(s) ${lib.concatMapStringsSep ", " toString outOfRange}, but services.pgbackrest defines only ${toString (length names)} (${lib.concatStringsSep ", " (lib.imap1 (i: n: "repo${toString i} = ${n}") names)})."
    ++ lib.optional (duplicates != [])
    "services.postgresql-preseed.pgbackrest.repos names repo${lib.concatMapStringsSep ", repo" toString duplicates} more than once (a name and its number are the same repository): list each once, in the order to try them.";

  # Everything this configuration mounts, as { mountpoint; what; declaredAt; dataset; fstype; }:
  # our datasets, fileSystems entries, and disko's ZFS datasets (when disko is imported).
  # `dataset` is set for ZFS (the dataset's name), `fstype` for other filesystems.
  claims = {
    datasets ? {},
    fileSystems ? {},
    disko ? null,
  }:
    lib.mapAttrsToList (name: d: {
      mountpoint = normalizePath d.mountpoint;
      what = name;
      declaredAt = ''services.postgresql-preseed.datasets."${name}"'';
      dataset = name;
      fstype = "zfs";
    })
    datasets
    ++ lib.mapAttrsToList (key: fs: let
      fsType = fs.fsType or "auto";
    in {
      mountpoint = normalizePath (fs.mountPoint or key);
      what =
        if (fs.device or null) != null
        then fs.device
        else if (fs.label or null) != null
        then "label ${fs.label}"
        else "fileSystems.\"${key}\"";
      declaredAt = ''fileSystems."${key}"'';
      dataset =
        if fsType == "zfs"
        then fs.device or null
        else null;
      fstype = fsType;
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
              mountpoint = normalizePath mountpoint;
              what = "${pool}/${name}";
              declaredAt = ''disko.devices.zpool."${pool}".datasets."${name}"'';
              dataset = "${pool}/${name}";
              fstype = "zfs";
            }
        ) (zpool.datasets or {}))
    ) (disko.zpool or {})));

  # The mountpoints this module answers for: dataDir, everything above and below it, and the
  # receipt's directory and everything above it. Two claims on a mountpoint elsewhere (two
  # entries on /srv/data) are not this module's business.
  concerns = {
    dataDir,
    markerDir,
  }: mountpoint:
    isAtOrBelow mountpoint dataDir
    || isAtOrBelow dataDir mountpoint
    || isAtOrBelow mountpoint markerDir;

  # Mountpoints claimed by more than one distinct thing, among those `concerned` answers true
  # for: [{ mountpoint; claims; }].
  conflicts = concerned: allClaims: let
    byMountpoint = lib.groupBy (c: c.mountpoint) (filter (c: concerned c.mountpoint) allClaims);
    distinct = cs: lib.unique (map (c: c.what) cs);
  in
    lib.mapAttrsToList (mountpoint: cs: {
      inherit mountpoint;
      claims = cs;
    })
    (lib.filterAttrs (_: cs: length (distinct cs) > 1) byMountpoint);

  # The message for one conflict: every claimant, where it is declared, and the fix.
  conflictMessage = conflict: let
    lines = map (c: "  - ${c.what} (${c.declaredAt})") conflict.claims;
  in ''
    services.postgresql-preseed: ${toString (length (lib.unique (map (c: c.what) conflict.claims)))} filesystems claim the mountpoint ${conflict.mountpoint}:
    ${lib.concatStringsSep "\n" lines}
    Mounted together they stack, and the lower one is hidden (the incident this module exists
    for). Keep one declaration for ${conflict.mountpoint} and remove or re-point the others.'';

  # Datasets declared both in services.postgresql-preseed.datasets (which sets their mountpoint
  # property, so ZFS mounts them) and as a fileSystems entry (which mounts them a second time,
  # as a legacy mount): [{ name; fileSystemsKey; }].
  doublyDeclared = datasets: fileSystems:
    lib.concatLists (lib.mapAttrsToList (
        key: fs:
          lib.optional ((fs.fsType or null) == "zfs" && datasets ? ${fs.device or ""}) {
            name = fs.device;
            fileSystemsKey = key;
          }
      )
      fileSystems);

  # The filesystem PGDATA lives on, from the declarations: the claim with the longest
  # mountpoint at or above dataDir, or null when nothing declared covers it.
  nearestClaim = allClaims: dataDir: let
    covering = filter (c: isAtOrBelow c.mountpoint dataDir) allClaims;
  in
    if covering == []
    then null
    else head (lib.sort (a: b: lib.stringLength a.mountpoint > lib.stringLength b.mountpoint) covering);

  # requireMount's default: what the nearest declaration says PGDATA's filesystem is —
  # { dataset; fstype = null; mountpoint; } for ZFS, { dataset = null; fstype; mountpoint; }
  # for another declared filesystem type — or null when nothing declared covers dataDir (or
  # its type is not known, such as fsType = "auto").
  requireMountFrom = claim:
    if claim == null
    then null
    else if claim.dataset != null
    then {
      inherit (claim) dataset mountpoint;
      fstype = null;
    }
    else if claim.fstype != null && claim.fstype != "auto"
    then {
      inherit (claim) fstype mountpoint;
      dataset = null;
    }
    else null;

  # systemd's quoting of one ExecStart= argument (systemd.service(5), "Command lines"): in
  # double quotes with `\` and `"` escaped, `%` doubled (specifiers) and `$` doubled (variable
  # expansion). Our paths are restricted to characters that need none of this; it is here so
  # that stays true if the restriction is ever relaxed.
  execArg = arg: let
    escaped = builtins.replaceStrings ["\\" "\"" "%" "$"] ["\\\\" "\\\"" "%%" "$$"] (toString arg);
  in
    if builtins.match "[A-Za-z0-9._/@+:,=~-]+" escaped != null
    then escaped
    else ''"${escaped}"'';
  execLine = args: lib.concatMapStringsSep " " execArg args;
}
