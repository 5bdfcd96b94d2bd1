# Evaluation tests of the module (tier 3). A function of nixpkgs `lib` alone, so it runs under
# `nix flake check` (the flake passes nixpkgs.lib) and on machines without nixpkgs:
#
#   nix-instantiate --eval --strict --json modules/tests/eval.nix --arg lib 'import <nixpkgs/lib>'
#
# The module is evaluated against twins of the nixpkgs modules it meets (./twins: same options,
# types, defaults and units as nixos-25.11), and the tests read the unit files those render.
# Returns the failures (lib.runTests: [] means every test passed). scripts/mutate-module proves
# the tests catch deliberate breakage of the module.
{lib}: let
  support = import ./support.nix {inherit lib;};
  inherit (support) pkgs pgPreseed diskoStub failed;
  inherit (builtins) any all attrNames elem filter length;

  base = {
    services.postgresql.enable = true;
    services.postgresql-preseed.enable = true;
    boot.supportedFilesystems = ["zfs"];
  };
  # Without services.pgbackrest there is no stanza to default to: most tests name one.
  evalBare = modules: support.evalSystem {modules = [base] ++ modules;};
  eval = modules: evalBare ([{services.postgresql-preseed.pgbackrest.stanza = lib.mkDefault "main";}] ++ modules);
  firesWith = needle: config: any (lib.hasInfix needle) (failed config);

  # The unit files NixOS would write: a file's text, and the values of one key in it.
  text = config: file: config.systemd.rendered.${file}.text;
  values = config: file: key:
    map (lib.removePrefix "${key}=") (filter (lib.hasPrefix "${key}=") (lib.splitString "\n" (text config file)));
  words = config: file: key: lib.concatMap (lib.splitString " ") (values config file key);
  linked = config: link: config.systemd.rendered ? ${link};
  ordering = config: import ./ordering.nix {inherit lib;} config.systemd.rendered;

  good = eval [];
  settings = good.services.postgresql-preseed.settings;
  service = name: "${name}.service";

  withDatasets = extra:
    eval ([
        {
          services.postgresql-preseed.datasets."tank/services/postgresql".mountpoint = "/var/lib/postgresql/17";
        }
      ]
      ++ extra);
  zfsHost = withDatasets [];

  withPgbackrest = extra:
    evalBare [
      {
        services.pgbackrest = {
          enable = true;
          repos = {
            nas = {
              host = null;
              path = "/mnt/nas/pgbackrest";
            };
            s3.type = "s3";
          };
        };
      }
      extra
    ];

  # The units the module adds, with and without datasets and the drill.
  ourUnits = ["postgresql-preseed-datasets" "postgresql-preseed-preflight" "postgresql-preseed" "postgresql-preseed-verify" "postgresql-preseed-drill"];
  fullHost = withDatasets [{services.postgresql-preseed.drill.enable = true;}];

  # The VM scenarios, evaluated as far as this machine can: each scenario's definition and each
  # node that runs PostgreSQL, through the twins (including qemu-vm.nix's).
  scenarioNames = import ../../nixos-tests/scenarios.nix;
  vmTests = import ../../nixos-tests {
    inherit pkgs;
    inherit (support) module;
  };
  resolveTest = test:
    if builtins.isFunction test
    then test {inherit pkgs;}
    else test;
  vmDbNodes = lib.concatLists (lib.mapAttrsToList (
      _: test:
        map support.evalNode (lib.attrValues (lib.filterAttrs (name: _: name != "backup") (resolveTest test).nodes))
    )
    vmTests);

  # The configuration README.md shows (examples/host), evaluated as the flake's module sees it.
  example = support.evalSystem {
    modules = [../../examples/host/configuration.nix];
    specialArgs.inputs.postgresql-preseed.nixosModules.default = {};
  };
  exampleFlake = let
    flake = import ../../examples/host/flake.nix;
    outputs = flake.outputs {
      self = {};
      nixpkgs.lib.nixosSystem = args: args;
      postgresql-preseed = {};
    };
  in {
    inherit (flake) inputs;
    db = outputs.nixosConfigurations.db;
  };

  # The settings JSON with one option changed.
  setting = option: value: (eval [{services.postgresql-preseed = lib.setAttrByPath option value;}]).services.postgresql-preseed.settings;
in
  lib.runTests {
    # --- The units and how they are ordered --------------------------------------------------

    testTheModulesUnits = {
      expr = filter (n: elem (lib.removeSuffix ".service" n) ourUnits) (attrNames fullHost.systemd.rendered);
      expected = map service ["postgresql-preseed-datasets" "postgresql-preseed-drill" "postgresql-preseed-preflight" "postgresql-preseed-verify" "postgresql-preseed"];
    };

    testPreflightRestoreAndVerifyAreOneshotsThatStayActiveAsPostgres = {
      expr = map (u: {
        type = values good (service u) "Type";
        remain = values good (service u) "RemainAfterExit";
        user = values good (service u) "User";
      }) ["postgresql-preseed-preflight" "postgresql-preseed" "postgresql-preseed-verify"];
      expected =
        lib.genList (_: {
          type = ["oneshot"];
          remain = ["true"];
          user = ["postgres"];
        })
        3;
    };

    testRestoreIsSkippedOnAHealthyBootButNotMidRestore = {
      expr = values good "postgresql-preseed.service" "ConditionPathExists";
      expected = [
        "|!/var/lib/postgresql/17/PG_VERSION"
        "|!/var/lib/postgresql/17/global/pg_control"
        "|/var/lib/postgresql/17/backup.manifest"
      ];
    };

    # PGDATA's and the receipt's filesystems are mounted before the guards look at them (for
    # fstab mounts; ZFS mounts are ordered by After=zfs-mount.service).
    testGuardsRequireTheMountsOfPgdataAndTheReceipt = {
      expr = map (u: values good (service u) "RequiresMountsFor") ["postgresql-preseed-preflight" "postgresql-preseed"];
      expected = lib.genList (_: ["/var/lib/postgresql/17" "/var/lib/postgresql-preseed/17"]) 2;
    };

    testPreflightRunsEveryBootWithoutCondition = {
      expr = lib.hasInfix "Condition" (text good "postgresql-preseed-preflight.service");
      expected = false;
    };

    testPostgresqlRequiresAndFollowsTheGuards = {
      expr = {
        requires = words good "postgresql.service" "Requires";
        after = words good "postgresql.service" "After";
        requiredLinks = map (u: linked good "postgresql.service.requires/${u}.service") ["postgresql-preseed-preflight" "postgresql-preseed"];
        before = map (u: elem "postgresql.service" (words good (service u) "Before")) ["postgresql-preseed-preflight" "postgresql-preseed"];
      };
      expected = {
        requires = ["postgresql-preseed-preflight.service" "postgresql-preseed.service"];
        after = ["network.target" "postgresql-preseed-preflight.service" "postgresql-preseed.service"];
        requiredLinks = [true true];
        before = [true true];
      };
    };

    # The drill is `systemctl stop postgresql; <empty PGDATA>; systemctl start postgresql`: the
    # guards must run again on that start, not stay "active (exited)" from boot (which would let
    # nixpkgs' initdb create an empty cluster — the incident).
    testGuardsRestartWithPostgresql = {
      expr = map (u: values good (service u) "PartOf") ["postgresql-preseed-preflight" "postgresql-preseed"];
      expected = [["postgresql.service"] ["postgresql.service"]];
    };

    # Before nixpkgs' preStart (initdb when PG_VERSION is missing), on every start.
    testInitdbGuardRunsFirstInPostgresql = {
      expr = let
        pre = values good "postgresql.service" "ExecStartPre";
      in {
        count = length pre;
        first = builtins.head pre;
        secondIsNixpkgsPreStart = lib.hasInfix "unit-script-postgresql-pre-start" (builtins.elemAt pre 1);
      };
      expected = {
        count = 2;
        first = "/etc/pg-preseed/bin/pg-preseed --config /etc/pg-preseed/config.json initdb-guard";
        secondIsNixpkgsPreStart = true;
      };
    };

    testGuardsRunAfterTheMounts = {
      expr = map (u: let
        after = words good (service u) "After";
      in
        all (t: elem t after) ["local-fs.target" "remote-fs.target" "zfs-mount.service"]) ["postgresql-preseed-preflight" "postgresql-preseed"];
      expected = [true true];
    };

    testRestoreWaitsForTheNetworkAndPreflight = {
      expr = {
        after = lib.subtractLists ["local-fs.target" "remote-fs.target" "zfs-mount.service" "systemd-tmpfiles-setup.service"] (words good "postgresql-preseed.service" "After");
        requires = words good "postgresql-preseed.service" "Requires";
        wants = words good "postgresql-preseed.service" "Wants";
        wanted = linked good "multi-user.target.wants/postgresql-preseed.service";
      };
      expected = {
        after = ["postgresql-preseed-preflight.service" "network-online.target"];
        requires = ["postgresql-preseed-preflight.service"];
        wants = ["network-online.target"];
        wanted = true;
      };
    };

    testPreflightOrdering = {
      expr = {
        before = words zfsHost "postgresql-preseed-preflight.service" "Before";
        requires = words zfsHost "postgresql-preseed-preflight.service" "Requires";
        afterDatasets = elem "postgresql-preseed-datasets.service" (words zfsHost "postgresql-preseed-preflight.service" "After");
        wanted = linked zfsHost "multi-user.target.wants/postgresql-preseed-preflight.service";
      };
      expected = {
        before = ["postgresql.service" "postgresql-preseed.service"];
        requires = ["postgresql-preseed-datasets.service"];
        afterDatasets = true;
        wanted = true;
      };
    };

    testVerifyRunsOnceRecoveryHasEndedAndWithEveryStart = {
      expr = {
        after = words good "postgresql-preseed-verify.service" "After";
        requires = words good "postgresql-preseed-verify.service" "Requires";
        withPostgresql = linked good "postgresql.service.wants/postgresql-preseed-verify.service";
        atBoot = linked good "multi-user.target.wants/postgresql-preseed-verify.service";
        exec = values good "postgresql-preseed-verify.service" "ExecStart";
      };
      expected = {
        after = ["postgresql.service" "postgresql-setup.service"];
        requires = ["postgresql.service"];
        withPostgresql = true;
        atBoot = true;
        exec = ["/etc/pg-preseed/bin/pg-preseed --config /etc/pg-preseed/config.json verify --lock-wait 1h"];
      };
    };

    testDatasetsUnitRunsAsRootBetweenImportAndMount = {
      expr = let
        file = "postgresql-preseed-datasets.service";
      in {
        root = values zfsHost file "User";
        defaultDependencies = values zfsHost file "DefaultDependencies";
        after = words zfsHost file "After";
        before = words zfsHost file "Before";
        conflicts = words zfsHost file "Conflicts";
        wantedByMount = linked zfsHost "zfs-mount.service.wants/${file}";
        requiredByPreflight = linked zfsHost "postgresql-preseed-preflight.service.requires/${file}";
        caps = values zfsHost file "CapabilityBoundingSet";
        exec = values zfsHost file "ExecStart";
        devices = values zfsHost "postgresql-preseed-preflight.service" "DeviceAllow";
        zfsInPath = lib.hasInfix "-zfs-2.3.4/bin" (text zfsHost file);
      };
      expected = {
        root = [];
        defaultDependencies = ["false"];
        after = ["zfs-import.target"];
        before = ["zfs-mount.service" "local-fs.target" "postgresql-preseed-preflight.service" "shutdown.target"];
        conflicts = ["shutdown.target"];
        wantedByMount = true;
        requiredByPreflight = true;
        caps = ["CAP_SYS_ADMIN"];
        exec = ["/etc/pg-preseed/bin/pg-preseed --config /etc/pg-preseed/config.json datasets ensure"];
        devices = ["/dev/zfs rw"];
        zfsInPath = true;
      };
    };

    testNoDatasetsNoDatasetsUnit = {
      expr = good.systemd.rendered ? "postgresql-preseed-datasets.service";
      expected = false;
    };

    # Issue 10.1: an early unit (DefaultDependencies=false, before local-fs.target) must not use
    # a setting with an implicit dependency on a unit that runs after the mounts.
    testTheDatasetsUnitHasNoImplicitLateDependency = {
      expr = let
        file = "postgresql-preseed-datasets.service";
      in
        filter (key: values fullHost file key != [] && values fullHost file key != ["false"]) [
          "PrivateTmp"
          "RootDirectory"
          "RootImage"
          "WorkingDirectory"
          "StateDirectory"
          "CacheDirectory"
          "LogsDirectory"
          "ConfigurationDirectory"
          "LogNamespace"
          "RequiresMountsFor"
        ];
      expected = [];
    };

    # Issue 16.4: the datasets unit records its outcome for status and the metrics under /run
    # (the receipt's directory may not be mounted yet). RuntimeDirectory= implies
    # RequiresMountsFor=/run/pg-preseed (systemd src/core/unit.c): only /run's own mount, which
    # is there before any unit starts (the ordering model below includes it; tier 4 boots it).
    testTheDatasetsUnitKeepsItsRecordUnderRun = {
      expr = lib.genAttrs ["RuntimeDirectory" "RuntimeDirectoryMode" "RuntimeDirectoryPreserve"] (values fullHost "postgresql-preseed-datasets.service");
      expected = {
        RuntimeDirectory = ["pg-preseed"];
        RuntimeDirectoryMode = ["0755"];
        RuntimeDirectoryPreserve = ["true"];
      };
    };

    # Issue 10.1, as systemd sees the whole boot: no ordering cycle among the rendered units,
    # and the datasets unit starts after the pool import and before the mounts.
    testNoOrderingCycleAtBoot = {
      expr = let
        o = ordering fullHost;
        before = a: b: o.cycle == null && o.position a < o.position b;
      in {
        inherit (o) cycle;
        importThenDatasets = before "zfs-import.target" "postgresql-preseed-datasets.service";
        datasetsThenMount = before "postgresql-preseed-datasets.service" "zfs-mount.service";
        mountThenPreflight = before "zfs-mount.service" "postgresql-preseed-preflight.service";
        preflightThenRestore = before "postgresql-preseed-preflight.service" "postgresql-preseed.service";
        restoreThenPostgresql = before "postgresql-preseed.service" "postgresql.service";
        postgresqlThenVerify = before "postgresql-setup.service" "postgresql-preseed-verify.service";
      };
      expected = {
        cycle = null;
        importThenDatasets = true;
        datasetsThenMount = true;
        mountThenPreflight = true;
        preflightThenRestore = true;
        restoreThenPostgresql = true;
        postgresqlThenVerify = true;
      };
    };

    # The model itself: it finds the cycle the datasets unit had with PrivateTmp.
    testTheOrderingModelFindsTheCycleOfAPrivateTmpEarlyUnit = {
      expr = (ordering (withDatasets [{systemd.services.postgresql-preseed-datasets.serviceConfig.PrivateTmp = true;}])).cycle != null;
      expected = true;
    };

    testHardeningOfTheRestoreUnit = {
      expr = let
        file = "postgresql-preseed.service";
      in {
        inherit (lib.genAttrs ["ProtectSystem" "PrivateTmp" "NoNewPrivileges" "CapabilityBoundingSet" "EnvironmentFile" "TimeoutStartSec"] (values good file)) ProtectSystem PrivateTmp NoNewPrivileges CapabilityBoundingSet EnvironmentFile TimeoutStartSec;
        writable = values good file "ReadWritePaths";
        recreatesPgdata = values good file "ExecStartPre";
      };
      expected = {
        ProtectSystem = ["strict"];
        PrivateTmp = ["true"];
        NoNewPrivileges = ["true"];
        CapabilityBoundingSet = [""];
        EnvironmentFile = [];
        TimeoutStartSec = ["infinity"];
        # PGDATA itself, never its parent (a bind of the parent shows PGDATA's mount twice).
        writable = ["/var/lib/postgresql-preseed/17" "-/var/lib/postgresql/17" "-/var/log/pgbackrest" "-/var/spool/pgbackrest"];
        recreatesPgdata = ["+${pkgs.systemd}/bin/systemd-tmpfiles --create --prefix=/var/lib/postgresql/17"];
      };
    };

    testUnitsThatNeedNoNetworkHaveNone = {
      expr = map (u: values fullHost (service u) "PrivateNetwork") ["postgresql-preseed-datasets" "postgresql-preseed-preflight" "postgresql-preseed" "postgresql-preseed-verify" "postgresql-preseed-drill"];
      expected = [["true"] ["true"] [] [] []];
    };

    testSecretsOnlyThroughTheEnvironmentFile = {
      expr = let
        c = eval [{services.postgresql-preseed.pgbackrest.environmentFile = "/run/secrets/pgbackrest.env";}];
      in {
        envFiles = map (u: values c (service u) "EnvironmentFile") ["postgresql-preseed" "postgresql-preseed-verify" "postgresql"];
        inConfig = lib.hasInfix "pgbackrest.env" (builtins.toJSON c.services.postgresql-preseed.settings);
        inArgv = lib.hasInfix "pgbackrest.env" (toString (values c "postgresql-preseed.service" "ExecStart"));
      };
      expected = {
        # postgresql.service too: its restore_command (pg-preseed archive-get) runs pgBackRest.
        envFiles = [["/run/secrets/pgbackrest.env"] ["/run/secrets/pgbackrest.env"] ["/run/secrets/pgbackrest.env"]];
        inConfig = false;
        inArgv = false;
      };
    };

    # Issue 15.8: a path literal would be copied into the world-readable store.
    testTheEnvironmentFileIsAPathStringNeverAStorePath = {
      expr = (builtins.tryEval (builtins.deepSeq (eval [{services.postgresql-preseed.pgbackrest.environmentFile = ./eval.nix;}]).services.postgresql-preseed.pgbackrest.environmentFile null)).success;
      expected = false;
    };

    # Issue 10.14: pg-preseed is reached through /etc, so an update changes neither
    # postgresql.service nor the units it requires: `nixos-rebuild switch` does not restart
    # PostgreSQL for it; and the guards are never restarted by a switch.
    testUpdatingPgPreseedChangesNoUnitPostgresqlDependsOn = {
      expr = let
        newer = withDatasets [{services.postgresql-preseed.package = pgPreseed "0.2.0";}];
        same = file: text zfsHost file == text newer file;
      in {
        unchanged = map same ["postgresql.service" "postgresql-preseed-preflight.service" "postgresql-preseed.service" "postgresql-preseed-datasets.service"];
        etcFollows = zfsHost.environment.etc."pg-preseed/bin/pg-preseed".source != newer.environment.etc."pg-preseed/bin/pg-preseed".source;
        noRestartOnSwitch = map (u: lib.hasInfix "X-RestartIfChanged=false" (text zfsHost (service u))) ["postgresql-preseed-datasets" "postgresql-preseed-preflight" "postgresql-preseed"];
      };
      expected = {
        unchanged = [true true true true];
        etcFollows = true;
        noRestartOnSwitch = [true true true];
      };
    };

    testExecStartUsesTheCheckedConfig = {
      expr = {
        run = values good "postgresql-preseed.service" "ExecStart";
        etc = good.environment.etc."pg-preseed/config.json".source.name;
        checked = lib.hasInfix "pg-preseed check-config" good.environment.etc."pg-preseed/config.json".source.script;
        checker = map (p: p.name) good.environment.etc."pg-preseed/config.json".source.env.nativeBuildInputs;
      };
      expected = {
        run = ["/etc/pg-preseed/bin/pg-preseed --config /etc/pg-preseed/config.json run --lock-wait 1h"];
        etc = "pg-preseed-config.json";
        checked = true;
        checker = ["pg-preseed-0.1.0"];
      };
    };

    # Issue 10.15: the config is checked by the build platform's pg-preseed.
    testACrossBuildChecksWithTheBuildPlatformsPgPreseed = {
      expr = map (p: p.name) (eval [{services.postgresql-preseed.checkPackage = pgPreseed "0.1.0-build";}]).environment.etc."pg-preseed/config.json".source.env.nativeBuildInputs;
      expected = ["pg-preseed-0.1.0-build"];
    };

    testTmpfilesCreateTheReceiptDirectoryAndOwnPgdata = {
      expr = good.systemd.tmpfiles.rules;
      expected = [
        "d /var/lib/postgresql-preseed/17 0755 postgres postgres - -"
        "d /var/lib/postgresql/17 - postgres postgres - -"
        "d /var/spool/pgbackrest 0750 postgres postgres - -"
      ];
    };

    # The metrics textfile's directory exists and is postgres's (tier 4 found the units unable to
    # write the file: nothing else creates it).
    testTheMetricsDirectoryIsMadeForPostgres = {
      expr = builtins.filter (lib.hasInfix "prometheus") (eval [{services.postgresql-preseed.metrics.textfile = "/var/lib/prometheus-node-exporter/pg-preseed.prom";}]).systemd.tmpfiles.rules;
      expected = ["d /var/lib/prometheus-node-exporter 0755 postgres postgres - -"];
    };

    # --- The drill -----------------------------------------------------------------------------

    testDrillAddsATimerAndAPostgresUnit = {
      expr = let
        c = eval [
          {
            services.postgresql-preseed.drill = {
              enable = true;
              schedule = "Sun 04:00";
            };
          }
        ];
        file = "postgresql-preseed-drill.service";
      in {
        timer = values c "postgresql-preseed-drill.timer" "OnCalendar";
        wanted = linked c "timers.target.wants/postgresql-preseed-drill.timer";
        user = values c file "User";
        exec = values c file "ExecStart";
        writable = values c file "ReadWritePaths";
        after = words c file "After";
        scratch = elem "d /var/lib/postgresql-preseed/drill 0700 postgres postgres - -" c.systemd.tmpfiles.rules;
        noWXWithoutJit = values c file "MemoryDenyWriteExecute";
      };
      expected = {
        timer = ["Sun 04:00"];
        wanted = true;
        user = ["postgres"];
        exec = ["/etc/pg-preseed/bin/pg-preseed --config /etc/pg-preseed/config.json drill --scratch /var/lib/postgresql-preseed/drill"];
        writable = ["/var/lib/postgresql-preseed/17" "/var/lib/postgresql-preseed/drill" "-/var/spool/pgbackrest"];
        after = ["network-online.target" "postgresql-preseed-verify.service"];
        scratch = true;
        noWXWithoutJit = ["true"];
      };
    };

    # Issue 10.15: the drill's server JIT-compiles when PostgreSQL does.
    testTheDrillAllowsJitWhenPostgresqlUsesIt = {
      expr = values (eval [
        {
          services.postgresql.enableJIT = true;
          services.postgresql-preseed.drill.enable = true;
        }
      ]) "postgresql-preseed-drill.service" "MemoryDenyWriteExecute";
      expected = ["false"];
    };

    testNoDrillByDefault = {
      expr = good.systemd.rendered ? "postgresql-preseed-drill.service" || good.systemd.rendered ? "postgresql-preseed-drill.timer";
      expected = false;
    };

    # Issue 10.2: a scratch directory under /tmp or /var/tmp is not the one the unit sees
    # (PrivateTmp), and inside dataDir it would write into PGDATA.
    testTheDrillsScratchDirectoryIsRefusedInsideDataDirOrATmp = {
      expr = map (dir:
        failed (eval [
          {
            services.postgresql-preseed.drill = {
              enable = true;
              scratchDir = dir;
            };
          }
        ])
        != []) ["/var/tmp/pg-preseed-drill" "/tmp/drill" "/var/lib/postgresql/17/drill" "/var/lib/postgresql" "/srv/drill"];
      expected = [true true true true false];
    };

    # Issue 15.3: what reaches a unit file or a shell is only ever a safe path.
    testPathsWithSpacesOrShellCharactersAreRejected = {
      expr = map (dir: (builtins.tryEval (builtins.deepSeq (eval [{services.postgresql-preseed.drill.scratchDir = dir;}]).services.postgresql-preseed.drill.scratchDir null)).success) ["/srv/a b" "/srv/$(reboot)" "/srv/../etc" "/srv/100%" "/srv/drill"];
      expected = [false false false false true];
    };

    # --- The config JSON -------------------------------------------------------------------------

    testConfigJson = {
      expr = {
        inherit (settings) pgdata marker mode on_layering on_no_backup require_mount metrics post_restore second_primary;
        inherit (settings) postgres;
        inherit (settings.pgbackrest) stanza repos bin config process_max set max_backup_age repo_wait target archive_get;
        roundTrips = builtins.fromJSON (builtins.toJSON settings) == settings;
      };
      expected = {
        pgdata = "/var/lib/postgresql/17";
        marker = "/var/lib/postgresql-preseed/17/receipt.json";
        mode = "restore";
        on_layering = "fail";
        on_no_backup = "fail";
        require_mount = null;
        metrics = null;
        # No hook unless one is given; the guard against a second primary on by default.
        post_restore = null;
        second_primary = {
          mode = "refuse";
          watch = "90s";
        };
        postgres = {
          bin_dir = "${pkgs.postgresql_17}/bin";
          major = 17;
          user = "postgres";
          port = 5432;
          socket_dir = "/run/postgresql";
        };
        stanza = "main";
        repos = [
          {
            number = 1;
            name = null;
          }
        ];
        bin = "${pkgs.pgbackrest}/bin/pgbackrest";
        config = null;
        process_max = null;
        set = null;
        max_backup_age = null;
        repo_wait = "1min";
        target = {
          type = "default";
          value = null;
        };
        archive_get = {
          async = true;
          queue_max = "256MiB";
          process_max = null;
          spool_path = "/var/spool/pgbackrest";
        };
        roundTrips = true;
      };
    };

    # Issue 13: the post-restore hook reaches the JSON (the script as an executable in the store),
    # its secrets reach the verify unit (where it runs) and nothing else.
    testPostRestoreHook = {
      expr = let
        c = eval [
          {
            services.postgresql-preseed.pgbackrest.environmentFile = "/run/secrets/pgbackrest.env";
            services.postgresql-preseed.postRestore = {
              script = "psql -c 'ANALYZE'";
              sql = ["GRANT SELECT ON t TO r"];
              environmentFile = "/run/secrets/hook.env";
              timeout = "5min";
            };
          }
        ];
        hook = c.services.postgresql-preseed.settings.post_restore;
        # What nixpkgs' writeShellScript builds from the script (the twin records its file).
        built = pkgs.writeShellScript "pg-preseed-post-restore" "psql -c 'ANALYZE'";
      in {
        inherit (hook) sql timeout;
        scriptIsTheBuiltScript = hook.script == "${built}";
        scriptRuns = built.files."".executable && lib.hasSuffix "\npsql -c 'ANALYZE'" built.files."".text;
        envFiles = map (u: values c (service u) "EnvironmentFile") ["postgresql-preseed" "postgresql-preseed-verify" "postgresql"];
        sqlOnly = (setting ["postRestore" "sql"] ["ANALYZE"]).post_restore;
      };
      expected = {
        sql = ["GRANT SELECT ON t TO r"];
        timeout = "5min";
        scriptIsTheBuiltScript = true;
        scriptRuns = true;
        envFiles = [["/run/secrets/pgbackrest.env"] ["/run/secrets/pgbackrest.env" "/run/secrets/hook.env"] ["/run/secrets/pgbackrest.env"]];
        sqlOnly = {
          script = null;
          sql = ["ANALYZE"];
          timeout = "30min";
        };
      };
    };

    # Issue 13 (replay speed): the archive-get queue (on by default) has its settings in the
    # JSON, and its spool is made for postgres and writable where pgBackRest fills it — only
    # while the queue is on.
    testArchiveGetQueue = {
      expr = let
        off = eval [{services.postgresql-preseed.pgbackrest.archiveGet.async = false;}];
        moved = eval [{services.postgresql-preseed.pgbackrest.archiveGet.spoolPath = "/srv/spool/";}];
      in {
        queueMax = (setting ["pgbackrest" "archiveGet" "queueMax"] "1GiB").pgbackrest.archive_get.queue_max;
        processMax = (setting ["pgbackrest" "archiveGet" "processMax"] 4).pgbackrest.archive_get.process_max;
        async = good.services.postgresql-preseed.settings.pgbackrest.archive_get.async;
        onTmpfiles = builtins.filter (lib.hasInfix "spool") good.systemd.tmpfiles.rules;
        onPostgresql = values good "postgresql.service" "ReadWritePaths";
        offAsync = off.services.postgresql-preseed.settings.pgbackrest.archive_get.async;
        offTmpfiles = builtins.any (lib.hasInfix "spool") off.systemd.tmpfiles.rules;
        offPostgresql = values off "postgresql.service" "ReadWritePaths";
        movedSpool = moved.services.postgresql-preseed.settings.pgbackrest.archive_get.spool_path;
        movedRestoreUnit = builtins.elem "-/srv/spool" (values moved "postgresql-preseed.service" "ReadWritePaths");
        insideDataDir = firesWith "archiveGet.spoolPath" (eval [{services.postgresql-preseed.pgbackrest.archiveGet.spoolPath = "/var/lib/postgresql/17/spool";}]);
      };
      expected = {
        queueMax = "1GiB";
        processMax = 4;
        async = true;
        onTmpfiles = ["d /var/spool/pgbackrest 0750 postgres postgres - -"];
        onPostgresql = ["-/var/spool/pgbackrest"];
        offAsync = false;
        offTmpfiles = false;
        offPostgresql = [];
        movedSpool = "/srv/spool";
        movedRestoreUnit = true;
        insideDataDir = true;
      };
    };

    # Issue 14: the guard against a second primary reaches the JSON.
    testSecondPrimary = {
      expr = {
        mode = (setting ["secondPrimary" "mode"] "warn").second_primary.mode;
        watch = (setting ["secondPrimary" "watch"] "5min").second_primary.watch;
        badMode = (builtins.tryEval (builtins.deepSeq (setting ["secondPrimary" "mode"] "ignore") null)).success;
      };
      expected = {
        mode = "warn";
        watch = "5min";
        badMode = false;
      };
    };

    # Every setting reaches the JSON.
    testEverySettingIsPassedThrough = {
      expr = {
        mode = (setting ["mode"] "guard").mode;
        onNoBackup = (setting ["onNoBackup"] "initdb").on_no_backup;
        onLayering = (setting ["onLayering"] "warn").on_layering;
        processMax = (setting ["pgbackrest" "processMax"] 3).pgbackrest.process_max;
        set = (setting ["pgbackrest" "set"] "20260101-000000F").pgbackrest.set;
        target =
          (setting ["pgbackrest" "target"] {
            type = "time";
            value = "2026-01-02 03:04:05+00";
          })
          .pgbackrest
          .target;
        maxBackupAge = (setting ["pgbackrest" "maxBackupAge"] "7days").pgbackrest.max_backup_age;
        repoWait = (setting ["pgbackrest" "repoWait"] "10s").pgbackrest.repo_wait;
        metrics = (setting ["metrics" "textfile"] "/var/lib/prometheus-node-exporter/pg-preseed.prom").metrics;
        verifyTimeout = (setting ["verify" "timeout"] "2h").verify.timeout;
        verifyDatabase = (setting ["verify" "database"] "app").verify.database;
        configFile = (setting ["pgbackrest" "configFile"] "/etc/pgbackrest/other.conf").pgbackrest.config;
        port = (eval [{services.postgresql.settings.port = 5433;}]).services.postgresql-preseed.settings.postgres.port;
        majors = map (p: let
          s = (eval [{services.postgresql.package = p;}]).services.postgresql-preseed.settings;
        in [s.postgres.major s.pgdata s.marker s.postgres.bin_dir]) [pkgs.postgresql_15 pkgs.postgresql_16 pkgs.postgresql_17];
      };
      expected = {
        mode = "guard";
        onNoBackup = "initdb";
        onLayering = "warn";
        processMax = 3;
        set = "20260101-000000F";
        target = {
          type = "time";
          value = "2026-01-02 03:04:05+00";
        };
        maxBackupAge = "7days";
        repoWait = "10s";
        metrics.textfile = "/var/lib/prometheus-node-exporter/pg-preseed.prom";
        verifyTimeout = "2h";
        verifyDatabase = "app";
        configFile = "/etc/pgbackrest/other.conf";
        port = 5433;
        majors = [
          [15 "/var/lib/postgresql/15" "/var/lib/postgresql-preseed/15/receipt.json" "${pkgs.postgresql_15}/bin"]
          [16 "/var/lib/postgresql/16" "/var/lib/postgresql-preseed/16/receipt.json" "${pkgs.postgresql_16}/bin"]
          [17 "/var/lib/postgresql/17" "/var/lib/postgresql-preseed/17/receipt.json" "${pkgs.postgresql_17}/bin"]
        ];
      };
    };

    testVerifyChecksInJson = {
      expr =
        (eval [
          {
            services.postgresql-preseed.verify.sql = [
              "SELECT true"
              {
                name = "orders";
                sql = "SELECT count(*) FROM orders";
                expect = "3";
              }
              {sql = "SELECT 1";}
            ];
          }
        ])
        .services
        .postgresql-preseed
        .settings
        .verify
        .sql;
      expected = [
        "SELECT true"
        {
          name = "orders";
          sql = "SELECT count(*) FROM orders";
          expect = "3";
        }
        {sql = "SELECT 1";}
      ];
    };

    testDatasetsInJson = {
      expr = (withDatasets [{services.postgresql-preseed.datasets."tank/services/postgresql".properties.recordsize = "16K";}]).services.postgresql-preseed.settings.datasets;
      expected = [
        {
          name = "tank/services/postgresql";
          mountpoint = "/var/lib/postgresql/17";
          properties.recordsize = "16K";
        }
      ];
    };

    # Issue 10.9: one spelling per path.
    testPathsAreNormalisedOnce = {
      expr = let
        c = eval [
          {
            services.postgresql.dataDir = "/srv//pg/17/";
            services.postgresql-preseed.markerFile = "/var/lib/receipts/./pg.json";
          }
        ];
      in {
        inherit (c.services.postgresql-preseed.settings) pgdata marker;
        condition = values c "postgresql-preseed.service" "ConditionPathExists";
        failed = failed c;
      };
      expected = {
        pgdata = "/srv/pg/17";
        marker = "/var/lib/receipts/pg.json";
        condition = ["|!/srv/pg/17/PG_VERSION" "|!/srv/pg/17/global/pg_control" "|/srv/pg/17/backup.manifest"];
        failed = [];
      };
    };

    # Issue 10.9: a dataDir just below / must not make / writable.
    testATopLevelDataDirDoesNotMakeTheRootWritable = {
      expr = let
        c = eval [{services.postgresql.dataDir = "/pgdata";}];
      in
        filter (p: elem p ["/" "-/" "+/" "-+/"]) (values c "postgresql-preseed.service" "ReadWritePaths");
      expected = [];
    };

    # --- pgBackRest --------------------------------------------------------------------------

    testPgbackrestStanzaAndRepoNamesMapToItsNumbers = {
      expr = let
        c = withPgbackrest {services.postgresql-preseed.pgbackrest.repos = ["s3" "nas"];};
      in {
        inherit (c.services.postgresql-preseed.settings.pgbackrest) stanza repos config;
        failed = failed c;
      };
      expected = {
        # nixpkgs' pgbackrest module defines the stanza `default` for the local PostgreSQL.
        stanza = "default";
        # services.pgbackrest numbers repositories by attribute name: nas = repo1, s3 = repo2.
        repos = [
          {
            number = 2;
            name = "s3";
          }
          {
            number = 1;
            name = "nas";
          }
        ];
        config = "/etc/pgbackrest/pgbackrest.conf";
        failed = [];
      };
    };

    testRepoNumbersAreNamedWhenKnown = {
      expr = (withPgbackrest {services.postgresql-preseed.pgbackrest.repos = [2 1];}).services.postgresql-preseed.settings.pgbackrest.repos;
      expected = [
        {
          number = 2;
          name = "s3";
        }
        {
          number = 1;
          name = "nas";
        }
      ];
    };

    # Issue 10.10.
    testRepositoryListsThatCannotBeRightFail = {
      expr = {
        severalWithoutOrder = firesWith ''repos = [ "nas" "s3" ]'' (withPgbackrest {});
        unknownName = firesWith "names tape, which services.pgbackrest.repos does not define" (withPgbackrest {services.postgresql-preseed.pgbackrest.repos = ["nas" "tape"];});
        outOfRange = firesWith "repository number(s) 3, but services.pgbackrest defines only 2" (withPgbackrest {services.postgresql-preseed.pgbackrest.repos = [3 1];});
        duplicate = firesWith "names repo1 more than once" (withPgbackrest {services.postgresql-preseed.pgbackrest.repos = ["nas" 1];});
        emptyWithoutPgbackrest = firesWith "pgbackrest.repos is empty" (eval [{services.postgresql-preseed.pgbackrest.repos = [];}]);
        nameWithoutPgbackrest = firesWith "services.pgbackrest is not enabled, so write repository numbers" (eval [{services.postgresql-preseed.pgbackrest.repos = ["nas"];}]);
        numbersWithoutPgbackrest = failed (eval [{services.postgresql-preseed.pgbackrest.repos = [2 1];}]);
      };
      expected = {
        severalWithoutOrder = true;
        unknownName = true;
        outOfRange = true;
        duplicate = true;
        emptyWithoutPgbackrest = true;
        nameWithoutPgbackrest = true;
        numbersWithoutPgbackrest = [];
      };
    };

    testAStanzaBesidesTheDefaultOneMustBeNamed = {
      expr = let
        c = withPgbackrest {
          services.pgbackrest.stanzas.main = {};
          services.postgresql-preseed.pgbackrest.repos = ["nas"];
        };
      in {
        inherit (c.services.postgresql-preseed.settings.pgbackrest) stanza;
        fires = firesWith "defines 2 stanzas (default, main)" c;
      };
      expected = {
        stanza = null;
        fires = true;
      };
    };

    testOneRepoAndOneStanzaNeedNothing = {
      expr = let
        c = evalBare [
          {
            services.pgbackrest = {
              enable = true;
              repos.localhost.path = "/var/lib/pgbackrest";
            };
          }
        ];
      in {
        failed = failed c;
        inherit (c.services.postgresql-preseed.settings.pgbackrest) stanza repos;
      };
      expected = {
        failed = [];
        stanza = "default";
        repos = [
          {
            number = 1;
            name = "localhost";
          }
        ];
      };
    };

    # nixpkgs' pgbackrest module writes nothing writable into postgresql.service
    # (ProtectSystem=strict): archive_command could not push to a local or NFS repository.
    testPostgresqlCanArchiveToALocalRepository = {
      expr = values (withPgbackrest {services.postgresql-preseed.pgbackrest.repos = ["nas"];}) "postgresql.service" "ReadWritePaths";
      # The archive-get queue's spool too (its restore_command fills it after a restore).
      expected = ["-/mnt/nas/pgbackrest" "-/var/spool/pgbackrest"];
    };

    # A repository on a share is mounted before the units that read it start: remote-fs.target
    # does not wait for a `nofail` mount (tier 4 booted the restore unit before the NFS share).
    # Wants, not Requires: a share that does not mount leaves the other repositories usable.
    testTheUnitsReadingRepositoriesWaitForTheirMounts = {
      expr = let
        c = withPgbackrest {
          services.postgresql-preseed.pgbackrest.repos = ["nas"];
          services.postgresql-preseed.drill.enable = true;
        };
      in
        map (u: {
          wants = values c u "WantsMountsFor";
          requires = values c u "RequiresMountsFor";
        }) ["postgresql-preseed.service" "postgresql-preseed-drill.service" "postgresql.service"];
      expected = [
        {
          wants = ["/mnt/nas/pgbackrest"];
          requires = ["/var/lib/postgresql/17" "/var/lib/postgresql-preseed/17"];
        }
        {
          wants = ["/mnt/nas/pgbackrest"];
          requires = [];
        }
        # Not PostgreSQL itself: a NAS that is down must not hold back a healthy boot's database.
        {
          wants = [];
          requires = ["/var/lib/postgresql/17"];
        }
      ];
    };

    testNoStanzaFires = {
      expr = firesWith "pgbackrest.stanza is not set" (evalBare []);
      expected = true;
    };

    testTargetNeedsValue = {
      expr = firesWith "needs target.value" (eval [{services.postgresql-preseed.pgbackrest.target.type = "time";}]);
      expected = true;
    };

    # --- What a wrong configuration gets -------------------------------------------------------

    testGoodConfigHasNoAssertionFailures = {
      expr = failed good;
      expected = [];
    };

    # Issue 10.7: nixpkgs defines services.postgresql.package and dataDir only when PostgreSQL is
    # enabled; the user gets this message, not "used but not defined".
    testPostgresqlDisabledGivesOnlyTheFriendlyMessage = {
      expr = failed (eval [{services.postgresql.enable = lib.mkForce false;}]);
      expected = ["services.postgresql-preseed guards services.postgresql: set services.postgresql.enable = true."];
    };

    testMarkerInsideDataDirFires = {
      expr = map (marker: firesWith "is inside dataDir" (eval [{services.postgresql-preseed.markerFile = marker;}])) ["/var/lib/postgresql/17/.preseed-completed" "/var/lib/postgresql/17.receipt.json"];
      expected = [true false];
    };

    testDataDirMustBePostgresqls = {
      expr = firesWith "must be services.postgresql.dataDir" (eval [{services.postgresql-preseed.dataDir = "/srv/pg";}]);
      expected = true;
    };

    # The incident's configuration: its dataset declared here, the old one still in fileSystems.
    testIncidentConfigFiresNamingBothDatasets = {
      expr = let
        messages = failed (withDatasets [
          {
            fileSystems."/var/lib/postgresql/17" = {
              device = "tank/services/postgres";
              fsType = "zfs";
            };
          }
        ]);
      in {
        count = length messages;
        namesBoth = all (m: lib.hasInfix "tank/services/postgresql (" m && lib.hasInfix "tank/services/postgres (" m) messages;
        saysWhere = all (m: lib.hasInfix ''fileSystems."/var/lib/postgresql/17"'' m) messages;
      };
      expected = {
        count = 1;
        namesBoth = true;
        saysWhere = true;
      };
    };

    testTwoDeclaredDatasetsOnOneMountpointFire = {
      expr = firesWith "claim the mountpoint /var/lib/postgresql/17" (eval [
        {
          services.postgresql-preseed.datasets = {
            "tank/services/postgres".mountpoint = "/var/lib/postgresql/17";
            "tank/services/postgresql".mountpoint = "/var/lib/postgresql/17/";
          };
        }
      ]);
      expected = true;
    };

    testDiskoDatasetsOnOneMountpointFire = {
      expr = firesWith ''disko.devices.zpool."tank".datasets."services/postgres"'' (eval [
        diskoStub
        {
          disko.devices.zpool.tank.datasets = {
            "services/postgres" = {
              type = "zfs_fs";
              mountpoint = "/var/lib/postgresql/17";
            };
            "services/postgresql" = {
              type = "zfs_fs";
              options.mountpoint = "/var/lib/postgresql/17";
            };
          };
        }
      ]);
      expected = true;
    };

    # Issue 10.11: two entries on one unrelated mountpoint are not this module's business.
    testUnrelatedMountsAreNotTheModulesBusiness = {
      expr = {
        unrelated = failed (eval [
          {
            fileSystems."/srv/data" = {
              device = "/dev/sdb1";
              fsType = "ext4";
            };
            fileSystems."/srv/data/" = {
              device = "/dev/sdc1";
              fsType = "ext4";
              mountPoint = "/srv/data";
            };
          }
        ]);
        aboveReceipt = firesWith "claim the mountpoint /var/lib" (eval [
          {
            fileSystems."/var/lib" = {
              device = "/dev/sdb1";
              fsType = "ext4";
            };
            fileSystems."/var/lib/" = {
              device = "/dev/sdc1";
              fsType = "ext4";
              mountPoint = "/var/lib";
            };
          }
        ]);
        belowPgdata = firesWith "claim the mountpoint /var/lib/postgresql/17/pg_wal" (eval [
          {
            services.postgresql-preseed.datasets = {
              "tank/wal".mountpoint = "/var/lib/postgresql/17/pg_wal";
              "tank/wal2".mountpoint = "/var/lib/postgresql/17/pg_wal";
            };
          }
        ]);
      };
      expected = {
        unrelated = [];
        aboveReceipt = true;
        belowPgdata = true;
      };
    };

    # Issue 10.11: a dataset both in datasets (ZFS mounts it) and in fileSystems (mounted again,
    # as a legacy mount) would stack at boot: refused at build time.
    testOneDatasetDeclaredTwiceIsRefusedAtBuildTime = {
      expr = firesWith ''datasets."tank/pg" and fileSystems."/var/lib/postgresql/17" both mount tank/pg'' (eval [
        {
          services.postgresql-preseed.datasets."tank/pg".mountpoint = "/var/lib/postgresql/17";
          fileSystems."/var/lib/postgresql/17" = {
            device = "tank/pg";
            fsType = "zfs";
          };
        }
      ]);
      expected = true;
    };

    # Issue 10.11: what evaluation does with onLayering = "warn" is what its description says.
    testOnLayeringWarnWarnsAtBuildTime = {
      expr = let
        c = eval [
          {
            services.postgresql-preseed.onLayering = "warn";
            services.postgresql-preseed.datasets = {
              "tank/a".mountpoint = "/var/lib/postgresql/17";
              "tank/b".mountpoint = "/var/lib/postgresql/17";
            };
          }
        ];
      in {
        failed = failed c;
        warned = any (lib.hasInfix "claim the mountpoint /var/lib/postgresql/17") c.warnings;
      };
      expected = {
        failed = [];
        warned = true;
      };
    };

    # Issue 10.12.
    testDatasetsWithoutZfsFire = {
      expr = firesWith "but ZFS is not enabled on this host" (withDatasets [{boot.supportedFilesystems = lib.mkForce [];}]);
      expected = true;
    };

    # --- requireMount: derived from what the configuration declares (issue 10.8) --------------

    testRequireMountFollowsTheDeclarations = {
      expr = let
        requireMount = modules: (eval modules).services.postgresql-preseed.settings.require_mount;
      in {
        datasetAtDataDir = requireMount [{services.postgresql-preseed.datasets."tank/pg".mountpoint = "/var/lib/postgresql/17";}];
        datasetAbove = requireMount [{services.postgresql-preseed.datasets."tank/pg".mountpoint = "/var/lib/postgresql";}];
        fileSystemsZfs = requireMount [
          {
            fileSystems."/var/lib/postgresql" = {
              device = "tank/pg";
              fsType = "zfs";
            };
          }
        ];
        fileSystemsXfs = requireMount [
          {
            fileSystems."/var/lib/postgresql/17" = {
              device = "/dev/disk/by-label/pg";
              fsType = "xfs";
            };
          }
        ];
        nearestWins = requireMount [
          {
            fileSystems."/var" = {
              device = "/dev/sdb1";
              fsType = "ext4";
            };
            services.postgresql-preseed.datasets."tank/pg".mountpoint = "/var/lib/postgresql/17";
          }
        ];
        disko = requireMount [
          diskoStub
          {
            disko.devices.zpool.tank.datasets."pg" = {
              type = "zfs_fs";
              mountpoint = "/var/lib/postgresql";
            };
          }
        ];
        undeclared = requireMount [];
        setByHand = requireMount [{services.postgresql-preseed.requireMount = {fstype = "zfs";};}];
        turnedOff = requireMount [
          {
            services.postgresql-preseed.datasets."tank/pg".mountpoint = "/var/lib/postgresql/17";
            services.postgresql-preseed.requireMount = null;
          }
        ];
      };
      expected = {
        datasetAtDataDir = {
          dataset = "tank/pg";
          fstype = null;
        };
        datasetAbove = {
          dataset = "tank/pg";
          fstype = null;
          mountpoint = "/var/lib/postgresql";
        };
        fileSystemsZfs = {
          dataset = "tank/pg";
          fstype = null;
          mountpoint = "/var/lib/postgresql";
        };
        fileSystemsXfs = {
          dataset = null;
          fstype = "xfs";
        };
        nearestWins = {
          dataset = "tank/pg";
          fstype = null;
        };
        disko = {
          dataset = "tank/pg";
          fstype = null;
          mountpoint = "/var/lib/postgresql";
        };
        undeclared = null;
        setByHand = {
          dataset = null;
          fstype = "zfs";
        };
        turnedOff = null;
      };
    };

    testRequireMountBelowDataDirIsRefused = {
      expr = firesWith "must be dataDir (/var/lib/postgresql/17) or a directory above it" (eval [
        {
          services.postgresql-preseed.requireMount = {
            dataset = "tank/pg";
            mountpoint = "/var/lib/postgresql/17/x";
          };
        }
      ]);
      expected = true;
    };

    # --- The VM scenarios (nixos-tests/) and README's example --------------------------------

    testEveryScenarioIsAFlakeCheck = {
      expr = attrNames vmTests;
      expected = lib.sort (a: b: a < b) (map (n: "vm-${n}") scenarioNames);
    };

    testVmScenariosHaveTimeoutsAndTheirScripts = {
      expr =
        lib.mapAttrsToList (name: test: let
          t = resolveTest test;
          scenario = lib.removePrefix "vm-" name;
        in {
          timeout = t.globalTimeout > 0;
          script = t.testScript == builtins.readFile ../../nixos-tests/common.py + builtins.readFile (../../nixos-tests + "/${scenario}.py");
          named = t.name == "postgresql-preseed-${scenario}";
        })
        vmTests;
      expected = map (_: {
        timeout = true;
        script = true;
        named = true;
      }) (attrNames vmTests);
    };

    # Issue 10.3: in a test VM, qemu-vm.nix replaces fileSystems; the repository share must
    # still be mounted there.
    testVmDatabaseNodesEvaluateAndMountTheRepositoryShare = {
      expr =
        map (c: {
          failed = failed c;
          zfs = c.boot.zfs.enabled;
          datasetsUnit = c.systemd.rendered ? "postgresql-preseed-datasets.service";
          share = c.fileSystems ? "/mnt/pgbackrest";
          requireMount = c.services.postgresql-preseed.settings.require_mount;
          cycle = (ordering c).cycle;
        })
        vmDbNodes;
      expected =
        map (_: {
          failed = [];
          zfs = true;
          datasetsUnit = true;
          share = true;
          requireMount = {
            dataset = "tank/services/postgresql";
            fstype = null;
          };
          cycle = null;
        })
        vmDbNodes;
    };

    testVmRepoFallbackTriesNfsThenS3 = {
      expr = let
        c = support.evalNode (resolveTest vmTests.vm-repo-fallback).nodes.db;
      in {
        inherit (c.services.postgresql-preseed.settings.pgbackrest) repos;
        envFile = length (values c "postgresql-preseed.service" "EnvironmentFile");
      };
      expected = {
        repos = [
          {
            number = 1;
            name = "nfs";
          }
          {
            number = 2;
            name = "s3";
          }
        ];
        envFile = 1;
      };
    };

    # Issue 10.13 / 16.6: README's example is a complete host flake, and it evaluates cleanly.
    testReadmesExampleEvaluates = {
      expr = {
        failed = failed example;
        inherit (example.services.postgresql-preseed.settings) require_mount;
        repo = example.services.postgresql-preseed.settings.pgbackrest.repos;
        follows = exampleFlake.inputs.postgresql-preseed.inputs.nixpkgs.follows;
        specialArgs = attrNames exampleFlake.db.specialArgs;
        modules = length exampleFlake.db.modules;
      };
      expected = {
        failed = [];
        require_mount = {
          dataset = "tank/services/postgresql";
          fstype = null;
        };
        repo = [
          {
            number = 1;
            name = "nas";
          }
        ];
        follows = "nixpkgs";
        specialArgs = ["inputs"];
        modules = 1;
      };
    };
  }
