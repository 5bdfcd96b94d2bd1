# Evaluation tests of the module (tier 3). A function of nixpkgs `lib` alone, so it runs under
# `nix flake check` (the flake passes nixpkgs.lib) and on machines without nixpkgs:
#
#   nix-instantiate --eval --strict --json modules/tests/eval.nix --arg lib 'import <nixpkgs/lib>'
#
# It evaluates the module against the smallest honest stubs of the NixOS options it reads and
# writes, and returns the failures as a list (lib.runTests: [] means every test passed).
{lib}: let
  support = import ./support.nix {inherit lib;};
  inherit (support) fakePackage pkgs stubs diskoStub;

  base = {
    services.postgresql.enable = true;
    services.postgresql-preseed = {
      enable = true;
      package = fakePackage "pg-preseed" "0.1.0";
    };
  };

  # Without services.pgbackrest there is no stanza to default to: most tests name one.
  evalBare = modules:
    (lib.evalModules {
      modules = [stubs ../postgresql-preseed.nix base] ++ modules;
      specialArgs = {inherit pkgs;};
    })
    .config;
  eval = modules: evalBare ([{services.postgresql-preseed.pgbackrest.stanza = lib.mkDefault "main";}] ++ modules);

  failed = config: map (a: a.message) (builtins.filter (a: !a.assertion) config.assertions);
  firesWith = needle: config: builtins.any (lib.hasInfix needle) (failed config);

  good = eval [];
  units = good.systemd.services;
  preseed = units.postgresql-preseed;
  settings = good.services.postgresql-preseed.settings;

  withPgbackrest = extra:
    evalBare [
      {
        services.pgbackrest = {
          enable = true;
          repos = {
            nas.path = "/mnt/nas/pgbackrest";
            s3.type = "s3";
          };
        };
      }
      extra
    ];

  # The VM scenarios (nixos-tests/), evaluated as far as this machine can: each scenario's
  # definition, and each node that imports the module, through the same stubs.
  vmModule = {
    imports = [../postgresql-preseed.nix];
    services.postgresql-preseed.package = lib.mkDefault (fakePackage "pg-preseed" "0.1.0");
  };
  vmTests = import ../../nixos-tests {
    inherit pkgs;
    module = vmModule;
  };
  resolveTest = test:
    if builtins.isFunction test
    then test {inherit pkgs;}
    else test;
  vmNode = node:
    (lib.evalModules {
      modules = [stubs node];
      specialArgs = {inherit pkgs;};
    })
    .config;
  vmDbNodes = lib.concatLists (lib.mapAttrsToList (
      _: test:
        lib.mapAttrsToList (_: vmNode) (lib.filterAttrs (name: _: name != "backup") (resolveTest test).nodes)
    )
    vmTests);

  # The seed's configuration: its dataset declared here, the old one still in fileSystems.
  incident = eval [
    {
      services.postgresql-preseed.datasets."tank/services/postgresql".mountpoint = "/var/lib/postgresql/16";
      fileSystems."/var/lib/postgresql/16" = {
        device = "tank/services/postgres";
        fsType = "zfs";
      };
    }
  ];
in
  lib.runTests {
    testUnitNames = {
      expr = lib.sort (a: b: a < b) (builtins.filter (lib.hasPrefix "postgresql") (builtins.attrNames units));
      expected = ["postgresql" "postgresql-preseed" "postgresql-preseed-preflight" "postgresql-preseed-verify"];
    };

    testPreseedIsAOneshotThatStaysActive = {
      expr = {inherit (preseed.serviceConfig) Type RemainAfterExit User;};
      expected = {
        Type = "oneshot";
        RemainAfterExit = true;
        User = "postgres";
      };
    };

    testPreflightAndVerifyAreOneshotsThatStayActive = {
      expr =
        map (name: {inherit (units.${name}.serviceConfig) Type RemainAfterExit User;})
        ["postgresql-preseed-preflight" "postgresql-preseed-verify"];
      expected =
        lib.genList (_: {
          Type = "oneshot";
          RemainAfterExit = true;
          User = "postgres";
        })
        2;
    };

    testPreseedIsSkippedOnAHealthyBootButNotMidRestore = {
      expr = preseed.unitConfig.ConditionPathExists;
      expected = [
        "|!/var/lib/postgresql/16/PG_VERSION"
        "|!/var/lib/postgresql/16/global/pg_control"
        "|/var/lib/postgresql/16/backup.manifest"
      ];
    };

    testPostgresqlRequiresAndFollowsTheGuards = {
      expr = {
        requires = units.postgresql.requires;
        after = units.postgresql.after;
        preseedBefore = builtins.elem "postgresql.service" preseed.before;
        preseedRequiredBy = preseed.requiredBy;
        preflightRequiredBy = units.postgresql-preseed-preflight.requiredBy;
      };
      expected = {
        requires = ["postgresql-preseed-preflight.service" "postgresql-preseed.service"];
        after = ["postgresql-preseed-preflight.service" "postgresql-preseed.service"];
        preseedBefore = true;
        preseedRequiredBy = ["postgresql.service"];
        preflightRequiredBy = ["postgresql.service"];
      };
    };

    # The drill is `systemctl stop postgresql; <empty PGDATA>; systemctl start postgresql`: the
    # guards must run again on that start, not stay "active (exited)" from boot (which would let
    # nixpkgs' initdb create an empty cluster — the incident).
    testGuardsRestartWithPostgresql = {
      expr = {
        preseed = preseed.partOf;
        preflight = units.postgresql-preseed-preflight.partOf;
      };
      expected = {
        preseed = ["postgresql.service"];
        preflight = ["postgresql.service"];
      };
    };

    testPostgresqlRefusesAnUnclearedEmptyPgdataOnEveryStart = {
      expr = let
        c = eval [{systemd.services.postgresql.serviceConfig.ExecStartPre = ["/nix/store/x-postgresql-pre-start"];}];
      in
        c.systemd.services.postgresql.serviceConfig.ExecStartPre;
      expected = [
        "/nix/store/00000000000000000000000000000000-pg-preseed-0.1.0/bin/pg-preseed --config /etc/pg-preseed/config.json initdb-guard"
        "/nix/store/x-postgresql-pre-start"
      ];
    };

    testGuardsRunAfterMounts = {
      expr = builtins.all (u: builtins.elem "zfs-mount.service" u.after && builtins.elem "local-fs.target" u.after) [preseed units.postgresql-preseed-preflight];
      expected = true;
    };

    testPreflightRunsEveryBootWithoutCondition = {
      expr = units.postgresql-preseed-preflight.unitConfig ? ConditionPathExists;
      expected = false;
    };

    testVerifyRunsAfterPostgresqlHasRecovered = {
      expr = {
        inherit (units.postgresql-preseed-verify) after requires;
        user = units.postgresql-preseed-verify.serviceConfig.User;
      };
      expected = {
        after = ["postgresql.service" "postgresql-setup.service"];
        requires = ["postgresql.service"];
        user = "postgres";
      };
    };

    testHardening = {
      expr = {
        inherit (preseed.serviceConfig) ProtectSystem PrivateTmp NoNewPrivileges CapabilityBoundingSet;
        writable = preseed.serviceConfig.ReadWritePaths;
        envFile = preseed.serviceConfig.EnvironmentFile;
      };
      expected = {
        ProtectSystem = "strict";
        PrivateTmp = true;
        NoNewPrivileges = true;
        CapabilityBoundingSet = [""];
        writable = ["/var/lib/postgresql-preseed/16" "-/var/lib/postgresql/16" "-/var/lib/postgresql" "-/var/log/pgbackrest" "-/var/spool/pgbackrest"];
        envFile = [];
      };
    };

    testSecretsOnlyThroughTheEnvironmentFile = {
      expr = let
        c = eval [{services.postgresql-preseed.pgbackrest.environmentFile = "/run/secrets/pgbackrest.env";}];
        json = builtins.toJSON c.services.postgresql-preseed.settings;
      in {
        envFile = c.systemd.services.postgresql-preseed.serviceConfig.EnvironmentFile;
        inConfig = lib.hasInfix "pgbackrest.env" json;
        inArgv = lib.hasInfix "pgbackrest.env" c.systemd.services.postgresql-preseed.serviceConfig.ExecStart;
      };
      expected = {
        envFile = ["/run/secrets/pgbackrest.env"];
        inConfig = false;
        inArgv = false;
      };
    };

    testExecStartUsesTheCheckedConfig = {
      expr = {
        run = preseed.serviceConfig.ExecStart;
        etc = good.environment.etc."pg-preseed/config.json".source.name;
        checked = lib.hasInfix "pg-preseed check-config" good.environment.etc."pg-preseed/config.json".source.script;
      };
      expected = {
        run = "/nix/store/00000000000000000000000000000000-pg-preseed-0.1.0/bin/pg-preseed --config /etc/pg-preseed/config.json run --lock-wait 1h";
        etc = "pg-preseed-config.json";
        checked = true;
      };
    };

    testConfigJson = {
      expr = {
        inherit (settings) pgdata marker mode on_layering on_no_backup require_mount;
        postgres = settings.postgres;
        stanza = settings.pgbackrest.stanza;
        repos = settings.pgbackrest.repos;
        bin = settings.pgbackrest.bin;
        roundTrips = builtins.fromJSON (builtins.toJSON settings) == settings;
      };
      expected = {
        pgdata = "/var/lib/postgresql/16";
        marker = "/var/lib/postgresql-preseed/16/receipt.json";
        mode = "restore";
        on_layering = "fail";
        on_no_backup = "fail";
        require_mount = null;
        postgres = {
          bin_dir = "/nix/store/00000000000000000000000000000000-postgresql-16.4/bin";
          major = 16;
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
        bin = "/nix/store/00000000000000000000000000000000-pgbackrest-2.55.1/bin/pgbackrest";
        roundTrips = true;
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

    testPgbackrestStanzaAndRepoNamesMapToItsNumbers = {
      expr = let
        c = withPgbackrest {services.postgresql-preseed.pgbackrest.repos = ["s3" "nas"];};
      in {
        stanza = c.services.postgresql-preseed.settings.pgbackrest.stanza;
        repos = c.services.postgresql-preseed.settings.pgbackrest.repos;
        config = c.services.postgresql-preseed.settings.pgbackrest.config;
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

    testSeveralReposNeedAnExplicitOrder = {
      expr = firesWith ''repos = [ "nas" "s3" ]'' (withPgbackrest {});
      expected = true;
    };

    testUnknownRepoNameFires = {
      expr = firesWith "names tape, which services.pgbackrest.repos does not define" (withPgbackrest {services.postgresql-preseed.pgbackrest.repos = ["nas" "tape"];});
      expected = true;
    };

    testAStanzaBesidesTheDefaultOneMustBeNamed = {
      expr = let
        c = withPgbackrest {
          services.pgbackrest.stanzas.main = {};
          services.postgresql-preseed.pgbackrest.repos = ["nas"];
        };
      in {
        stanza = c.services.postgresql-preseed.settings.pgbackrest.stanza;
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

    testGoodConfigHasNoAssertionFailures = {
      expr = failed good;
      expected = [];
    };

    testPostgresqlDisabledFires = {
      expr = firesWith "set services.postgresql.enable = true" (eval [{services.postgresql.enable = lib.mkForce false;}]);
      expected = true;
    };

    testMarkerInsideDataDirFires = {
      expr = firesWith "is inside dataDir" (eval [{services.postgresql-preseed.markerFile = "/var/lib/postgresql/16/.preseed-completed";}]);
      expected = true;
    };

    testMarkerBesideDataDirIsFine = {
      expr = failed (eval [{services.postgresql-preseed.markerFile = "/var/lib/postgresql/16.receipt.json";}]);
      expected = [];
    };

    testNoStanzaFires = {
      expr = firesWith "pgbackrest.stanza is not set" (evalBare []);
      expected = true;
    };

    testDataDirMustBePostgresqls = {
      expr = firesWith "must be services.postgresql.dataDir" (eval [{services.postgresql-preseed.dataDir = "/srv/pg";}]);
      expected = true;
    };

    testIncidentConfigFiresNamingBothDatasets = {
      expr = let
        messages = failed incident;
      in {
        count = builtins.length messages;
        namesBoth = builtins.all (m: lib.hasInfix "tank/services/postgresql (" m && lib.hasInfix "tank/services/postgres (" m) messages;
        saysWhere = builtins.all (m: lib.hasInfix ''fileSystems."/var/lib/postgresql/16"'' m) messages;
      };
      expected = {
        count = 1;
        namesBoth = true;
        saysWhere = true;
      };
    };

    testTwoDeclaredDatasetsOnOneMountpointFire = {
      expr = firesWith "claim the mountpoint /var/lib/postgresql/16" (eval [
        {
          services.postgresql-preseed.datasets = {
            "tank/services/postgres".mountpoint = "/var/lib/postgresql/16";
            "tank/services/postgresql".mountpoint = "/var/lib/postgresql/16/";
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
              mountpoint = "/var/lib/postgresql/16";
            };
            "services/postgresql" = {
              type = "zfs_fs";
              options.mountpoint = "/var/lib/postgresql/16";
            };
          };
        }
      ]);
      expected = true;
    };

    testOneDatasetDeclaredInTwoPlacesIsNotAConflict = {
      expr = failed (eval [
        {
          services.postgresql-preseed.datasets."tank/pg".mountpoint = "/var/lib/postgresql/16";
          fileSystems."/var/lib/postgresql/16" = {
            device = "tank/pg";
            fsType = "zfs";
          };
        }
      ]);
      expected = [];
    };

    testDatasetAtDataDirIsRequiredMounted = {
      expr = (eval [{services.postgresql-preseed.datasets."tank/pg".mountpoint = "/var/lib/postgresql/16";}]).services.postgresql-preseed.settings.require_mount;
      expected = {
        dataset = "tank/pg";
        fstype = null;
      };
    };

    testDatasetsUnitRunsAsRootBeforeZfsMounts = {
      expr = let
        c = eval [
          {
            boot.zfs.enabled = true;
            services.postgresql-preseed.datasets."tank/pg" = {
              mountpoint = "/var/lib/postgresql/16";
              properties.recordsize = "16K";
            };
          }
        ];
        unit = c.systemd.services.postgresql-preseed-datasets;
      in {
        root = !(unit.serviceConfig ? User);
        defaultDependencies = unit.unitConfig.DefaultDependencies;
        beforeMounts = builtins.elem "zfs-mount.service" unit.before;
        afterImport = builtins.elem "zfs-import.target" unit.after;
        caps = unit.serviceConfig.CapabilityBoundingSet;
        exec = lib.hasSuffix "datasets ensure" unit.serviceConfig.ExecStart;
        preflightNeedsIt = builtins.elem "postgresql-preseed-datasets.service" c.systemd.services.postgresql-preseed-preflight.requires;
        zfsInPath = builtins.map (p: p.name) unit.path;
        devices = c.systemd.services.postgresql-preseed-preflight.serviceConfig.DeviceAllow;
        json = c.services.postgresql-preseed.settings.datasets;
      };
      expected = {
        root = true;
        defaultDependencies = false;
        beforeMounts = true;
        afterImport = true;
        caps = ["CAP_SYS_ADMIN"];
        exec = true;
        preflightNeedsIt = true;
        zfsInPath = ["zfs"];
        devices = ["/dev/zfs rw"];
        json = [
          {
            name = "tank/pg";
            mountpoint = "/var/lib/postgresql/16";
            properties.recordsize = "16K";
          }
        ];
      };
    };

    testNoDatasetsNoDatasetsUnit = {
      expr = units ? postgresql-preseed-datasets;
      expected = false;
    };

    testMarkerDirectoryIsCreated = {
      expr = good.systemd.tmpfiles.rules;
      expected = [
        "d /var/lib/postgresql-preseed/16 0755 postgres postgres - -"
        "d /var/lib/postgresql/16 - postgres postgres - -"
      ];
    };

    testVmScenariosAreTheSevenOfTheIssue = {
      expr = builtins.attrNames vmTests;
      expected = map (n: "vm-${n}") [
        "crash-mid-restore"
        "dataset-not-mounted"
        "first-boot-restore"
        "first-deploy"
        "incident-stacked-datasets"
        "repo-fallback"
        "wipe-restores"
      ];
    };

    testVmScenariosHaveTimeoutsAndTheirScripts = {
      expr =
        lib.mapAttrsToList (name: test: let
          t = resolveTest test;
        in {
          timeout = t.globalTimeout > 0;
          script = lib.hasPrefix "# Helpers shared by every scenario" t.testScript && lib.hasInfix "subtest(" t.testScript;
          named = t.name == "postgresql-preseed-${lib.removePrefix "vm-" name}";
        })
        vmTests;
      expected =
        builtins.genList (_: {
          timeout = true;
          script = true;
          named = true;
        })
        7;
    };

    testVmDatabaseNodesEvaluateWithoutAssertionFailures = {
      expr =
        map (c: {
          failed = failed c;
          zfs = c.boot.zfs.enabled;
          unit = c.systemd.services ? postgresql-preseed-datasets;
        })
        vmDbNodes;
      expected = builtins.genList (_: {
        failed = [];
        zfs = true;
        unit = true;
      }) (builtins.length vmDbNodes);
    };

    testVmRepoFallbackTriesNfsThenS3 = {
      expr = let
        t = resolveTest vmTests.vm-repo-fallback;
        c = vmNode t.nodes.db;
      in {
        repos = c.services.postgresql-preseed.settings.pgbackrest.repos;
        envFile = builtins.length c.systemd.services.postgresql-preseed.serviceConfig.EnvironmentFile;
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
        unit = c.systemd.services.postgresql-preseed-drill;
      in {
        timer = c.systemd.timers.postgresql-preseed-drill.timerConfig.OnCalendar;
        wantedBy = c.systemd.timers.postgresql-preseed-drill.wantedBy;
        user = unit.serviceConfig.User;
        exec = unit.serviceConfig.ExecStart;
        writable = builtins.elem "/var/tmp/pg-preseed-drill" unit.serviceConfig.ReadWritePaths;
        scratchCreated = builtins.elem "d /var/tmp/pg-preseed-drill 0750 postgres postgres - -" c.systemd.tmpfiles.rules;
      };
      expected = {
        timer = "Sun 04:00";
        wantedBy = ["timers.target"];
        user = "postgres";
        exec = "/nix/store/00000000000000000000000000000000-pg-preseed-0.1.0/bin/pg-preseed --config /etc/pg-preseed/config.json drill --scratch /var/tmp/pg-preseed-drill";
        writable = true;
        scratchCreated = true;
      };
    };

    testNoDrillByDefault = {
      expr = (units ? postgresql-preseed-drill) || (good.systemd.timers ? postgresql-preseed-drill);
      expected = false;
    };

    testTargetNeedsValue = {
      expr = firesWith "needs target.value" (eval [{services.postgresql-preseed.pgbackrest.target.type = "time";}]);
      expected = true;
    };
  }
