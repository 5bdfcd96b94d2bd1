//! Tier 2: isolation and hardening (issue 15). Each test proves one answer of
//! docs/reliability.md's threat model — what someone who can write one thing (another local
//! user, the PostgreSQL user, whoever picks a path, a production setting restored into a drill)
//! could make pg-preseed do — on real PostgreSQL and pgBackRest.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Stdio};
use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;
use testbed::{golden, Cluster, Host, Sandbox};

use crate::common::bin;

fn append_conf(cluster: &Cluster, lines: &str) {
    let path = cluster.pgdata.join("postgresql.conf");
    let mut text = fs::read_to_string(&path).expect("read postgresql.conf");
    text.push_str(lines);
    fs::write(&path, text).expect("write postgresql.conf");
}

fn mode(path: &Utf8Path) -> u32 {
    fs::symlink_metadata(path).expect("stat").mode() & 0o7777
}

/// Whether `pid` is a live process (a zombie has exited: only its parent has not reaped it).
fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rfind(')')
            .and_then(|end| stat[end + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// The incident behind issue 15.1: a drill of a logical-replication subscriber's backup started
/// the subscription's apply worker, which took the real subscriber's slot on the publisher,
/// consumed what the subscriber (briefly down) had not received yet, and advanced the slot: those
/// rows never reached the real subscriber. Two PostgreSQL clusters on this machine, a real
/// publication and subscription; the subscriber has production-sized settings and a library
/// that must be preloaded (pg_stat_statements). The drill's own checks look at its server from
/// inside: nothing preloaded, no apply worker, no replication or archiving out, bounded memory.
/// The publisher's slot does not move, and the real subscriber, started again, gets every row.
#[test]
fn drill_of_a_subscriber_leaves_the_publication_alone() {
    let sandbox = Sandbox::new("logical");
    let mut publisher = sandbox.cluster(&sandbox.pg_dir("publisher"));
    publisher.socket_dir = sandbox.shared_dir("sockets-publisher");
    publisher.initdb();
    append_conf(&publisher, "wal_level = logical\narchive_mode = off\n");
    publisher.start();
    publisher.psql("CREATE TABLE items (id int PRIMARY KEY)");
    publisher.psql("CREATE PUBLICATION items_pub FOR TABLE items");

    let mut subscriber = sandbox.cluster(&sandbox.pg_dir("pgdata"));
    subscriber.socket_dir = sandbox.shared_dir("sockets-subscriber");
    subscriber.initdb();
    append_conf(
        &subscriber,
        "shared_preload_libraries = 'pg_stat_statements'\nmax_connections = 150\n\
         max_worker_processes = 16\nwork_mem = '64MB'\nmaintenance_work_mem = '256MB'\n\
         shared_buffers = '160MB'\n",
    );
    let repo = sandbox.shared_dir("repo1");
    let pgbackrest = testbed::Pgbackrest::write(&sandbox, &subscriber, &[repo]);
    subscriber.pgbackrest_config = Some(pgbackrest.config.clone());
    subscriber.start();
    pgbackrest.run(&["stanza-create"]);
    subscriber.psql("CREATE EXTENSION pg_stat_statements");
    subscriber.psql("CREATE TABLE items (id int PRIMARY KEY)");
    subscriber.psql(&format!(
        "CREATE SUBSCRIPTION items_sub CONNECTION 'host={} port={} dbname=postgres user={}' \
         PUBLICATION items_pub",
        publisher.socket_dir,
        testbed::PORT,
        testbed::PG_USER
    ));
    publisher.psql("INSERT INTO items SELECT generate_series(1, 10)");
    testbed::wait_for(
        "the subscriber to receive the first 10 rows",
        Duration::from_secs(60),
        || subscriber.try_psql("SELECT count(*) FROM items").as_deref() == Some("10"),
    );
    pgbackrest.run(&["--type=full", "backup"]);

    // The subscriber is down for a moment; the publisher keeps what it has not confirmed.
    subscriber.stop();
    publisher.psql("INSERT INTO items SELECT generate_series(11, 30)");
    let slot = || {
        publisher.psql(
            "SELECT confirmed_flush_lsn || ' ' || restart_lsn FROM pg_replication_slots \
             WHERE slot_name = 'items_sub'",
        )
    };
    let before = slot();
    assert!(!before.is_empty(), "the subscription's slot exists");

    let mut host = Host::from_parts(&sandbox, bin(), subscriber.clone(), pgbackrest);
    host.set(
        "/verify/sql",
        json!([
            {"name": "the backup's rows", "sql": "SELECT count(*) FROM items", "expect": "10"},
            {"name": "the extension is installed", "sql": "SELECT count(*) = 1 FROM pg_extension WHERE extname = 'pg_stat_statements'"},
            {"name": "nothing preloaded", "sql": "SELECT current_setting('shared_preload_libraries') = ''"},
            {"name": "no logical replication workers", "sql": "SELECT current_setting('max_logical_replication_workers') = '0'"},
            {"name": "no replication out", "sql": "SELECT current_setting('primary_conninfo') = '' AND current_setting('primary_slot_name') = ''"},
            {"name": "no archiving", "sql": "SELECT current_setting('archive_mode') = 'off'"},
            {"name": "no address", "sql": "SELECT current_setting('listen_addresses') = ''"},
            {"name": "bounded memory", "sql": "SELECT current_setting('max_connections')::int <= 20 \
                AND pg_size_bytes(current_setting('shared_buffers')) <= 128 * 1024 * 1024 \
                AND pg_size_bytes(current_setting('work_mem')) <= 4 * 1024 * 1024 \
                AND pg_size_bytes(current_setting('maintenance_work_mem')) <= 64 * 1024 * 1024"},
            {"name": "time for a worker to start, if one could", "sql": "SELECT pg_sleep(3) IS NOT NULL"},
            {"name": "no apply worker ran", "sql": "SELECT count(*) = 0 FROM pg_stat_subscription WHERE pid IS NOT NULL"},
        ]),
    );
    let scratch = sandbox.path("scratch");
    let drill = host.preseed(&["drill", "--scratch", scratch.as_str()]);
    drill.expect_code(0);
    assert!(
        testbed::tree(&scratch).is_empty(),
        "the scratch copy is removed"
    );

    assert_eq!(slot(), before, "the publisher's slot did not move");
    subscriber.start();
    testbed::wait_for(
        "the real subscriber to receive all 30 rows",
        Duration::from_secs(60),
        || subscriber.try_psql("SELECT count(*) FROM items").as_deref() == Some("30"),
    );
}

/// Issue 15.2: with the receipt's directory writable by others, a claim written by `nobody`
/// ("pg-preseed decided a fresh start") turned `initdb-guard` from refuse to allow: initdb over
/// an emptied PGDATA whose data the backups hold. A file written by someone other than root or
/// the PostgreSQL user is not believed (and the reports say so), and preflight refuses a
/// receipt directory others can write or own.
#[test]
fn state_written_by_another_user_is_not_believed() {
    let sandbox = Sandbox::new("foreign");
    let host = Host::new(&sandbox, bin(), 1);
    let state = host.marker.parent().expect("dir").to_owned();
    fs::set_permissions(&state, fs::Permissions::from_mode(0o777)).expect("chmod");
    let claim_path = format!("{}.pending", host.marker);
    let claim = json!({
        "format": 1, "kind": "fresh", "pgdata": host.pgdata, "host": "elsewhere",
        "tool_version": "0.1.0", "started_at": "2026-01-01T00:00:00Z"
    });
    testbed::run_ok(Command::new("runuser").args([
        "-u",
        "nobody",
        "--",
        "sh",
        "-c",
        &format!("printf '%s' '{claim}' > {claim_path}"),
    ]));
    assert_eq!(
        fs::metadata(&claim_path).expect("stat").uid(),
        65534,
        "nobody wrote the claim"
    );

    let guard = host.preseed(&["initdb-guard"]);
    guard.expect_code(3);
    assert!(
        guard.json()["warnings"].to_string().contains("not trusted"),
        "{}",
        guard.stdout
    );
    let preflight = host.preseed(&["preflight"]);
    preflight.expect_code(3);
    assert!(
        preflight
            .finding_kinds()
            .contains(&"marker_dir_insecure".to_owned()),
        "{}",
        preflight.stdout
    );
    host.preseed(&["run"]).expect_code(3);
    assert!(testbed::tree(&host.pgdata).is_empty(), "PGDATA untouched");

    // The directory put right: the claim is still nobody's, and still not believed.
    fs::set_permissions(&state, fs::Permissions::from_mode(0o755)).expect("chmod");
    host.preseed(&["preflight"]).expect_code(0);
    host.preseed(&["initdb-guard"]).expect_code(3);
    let status = host.preseed(&["status"]);
    assert!(
        status.json()["warnings"]
            .to_string()
            .contains("not trusted"),
        "{}",
        status.stdout
    );

    // A receipt someone else owns is no receipt of ours.
    fs::remove_file(&claim_path).expect("rm");
    fs::write(
        &host.marker,
        serde_json::to_vec(&json!({
            "format": 1, "tool_version": "0.1.0", "host": "x", "pgdata": host.pgdata,
            "postgres_major": testbed::pg_major(), "system_identifier": "42", "action": "restored"
        }))
        .expect("json"),
    )
    .expect("write");
    nix::unistd::chown(
        host.marker.as_std_path(),
        Some(nix::unistd::Uid::from_raw(65534)),
        None,
    )
    .expect("chown");
    let status = host.preseed(&["status"]).json();
    assert_eq!(status["marker"]["state"], "unreadable", "{status}");
    assert!(status["marker"]["error"]
        .as_str()
        .is_some_and(|e| e.contains("not trusted")));

    // A directory owned by another user, even read-only to the rest: refused.
    fs::remove_file(&host.marker).expect("rm");
    nix::unistd::chown(
        state.as_std_path(),
        Some(nix::unistd::Uid::from_raw(65534)),
        None,
    )
    .expect("chown");
    let preflight = host.preseed(&["preflight"]);
    preflight.expect_code(3);
    assert!(preflight
        .finding_kinds()
        .contains(&"marker_dir_insecure".to_owned()));
}

/// Issue 15.3: the drill's paths went through `pg_ctl`'s `/bin/sh -c`: a scratch path with
/// `$(…)` ran a command, one with a space broke the drill. Now the first is refused before
/// anything runs (exit 2), and the second drills like any other.
#[test]
fn drill_paths_reach_no_shell() {
    let sandbox = Sandbox::new("shellpaths");
    let host = Host::new(&sandbox, bin(), 1);
    // Where the drill's children (the PostgreSQL user) could create it.
    let witness = sandbox.shared_dir("witness").join("ran");
    let evil = sandbox.path(&format!("scratch$(touch {witness})"));
    let run = host.preseed(&["drill", "--scratch", evil.as_str()]);
    assert!(!witness.exists(), "the command in the path ran");
    run.expect_code(2);
    assert!(
        run.all_output().contains("--scratch"),
        "{}",
        run.all_output()
    );

    let spaced = sandbox.path("scratch with a space");
    let run = host.preseed(&["drill", "--scratch", spaced.as_str()]);
    run.expect_code(0);
    assert!(testbed::tree(&spaced).is_empty());
    assert!(!witness.exists());
}

/// Issue 15.6: the lock file beside the receipt was opened, chowned and truncated as root
/// without looking at what it was: a hard link planted by the PostgreSQL user to a file of
/// root's (here a stand-in for /etc/shadow) was given to postgres and overwritten. It is refused
/// now, and so are a lock file owned by another user and one that is not a regular file.
#[test]
fn lock_file_planted_by_someone_else_is_refused() {
    let sandbox = Sandbox::new("locklink");
    let host = Host::new(&sandbox, bin(), 1);
    let lock = Utf8PathBuf::from(format!("{}.lock", host.marker));
    let precious = sandbox.path("shadow");
    fs::write(&precious, "root:$y$precious-hash:19000::::::\n").expect("write");
    fs::set_permissions(&precious, fs::Permissions::from_mode(0o600)).expect("chmod");
    fs::hard_link(&precious, &lock).expect("link");

    let run = host.preseed(&["run"]);
    run.expect_code(3);
    assert!(
        run.all_output().contains("hard link"),
        "{}",
        run.all_output()
    );
    let metadata = fs::metadata(&precious).expect("stat");
    assert_eq!((metadata.uid(), metadata.mode() & 0o7777), (0, 0o600));
    assert_eq!(
        fs::read_to_string(&precious).expect("read"),
        "root:$y$precious-hash:19000::::::\n"
    );
    assert!(testbed::tree(&host.pgdata).is_empty());

    fs::remove_file(&lock).expect("rm");
    fs::write(&lock, b"").expect("write");
    nix::unistd::chown(
        lock.as_std_path(),
        Some(nix::unistd::Uid::from_raw(65534)),
        None,
    )
    .expect("chown");
    let run = host.preseed(&["run"]);
    run.expect_code(3);
    assert_eq!(fs::metadata(&lock).expect("stat").uid(), 65534);

    fs::remove_file(&lock).expect("rm");
    nix::unistd::mkfifo(
        lock.as_std_path(),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .expect("mkfifo");
    host.preseed(&["run"]).expect_code(3);

    fs::remove_file(&lock).expect("rm");
    host.boot_recovers("restore");
}

/// Issue 15.7: the state files were 0644 and recorded what failing checks returned and psql's
/// error text. They are 0640 now (group: the PostgreSQL user's), and record a failed check by
/// name only: its value stays in the journal of that run. The metrics textfile stays 0644 for
/// the node exporter and holds nothing of the kind either.
#[test]
fn state_files_are_private_and_hold_no_returned_values() {
    let sandbox = Sandbox::new("private");
    let mut host = Host::new(&sandbox, bin(), 1);
    let metrics = sandbox.path("metrics");
    fs::create_dir_all(&metrics).expect("mkdir");
    let textfile = metrics.join("pg-preseed.prom");
    host.set("/metrics", json!({ "textfile": textfile }));
    let (_, postgres_gid) = testbed::postgres_ids();
    let claim = Utf8PathBuf::from(format!("{}.pending", host.marker));
    let last_run = Utf8PathBuf::from(format!("{}.last-run", host.marker));

    host.preseed(&["run"]).expect_code(0);
    host.cluster.start();
    // Private while the restore awaits verification…
    assert_eq!(mode(&claim), 0o640);
    host.preseed(&["verify"]).expect_code(0);
    // …and after.
    for file in [&host.marker, &last_run] {
        assert_eq!(mode(file), 0o640, "{file}");
        assert_eq!(
            fs::metadata(file).expect("stat").gid(),
            postgres_gid.as_raw(),
            "{file}"
        );
    }
    assert_eq!(mode(&textfile), 0o644);

    let secrets = ["tok-4f9a-not-for-files", "sekrit-in-an-error"];
    host.set(
        "/verify/sql",
        json!([
            {"name": "api token", "sql": format!("SELECT '{}'", secrets[0]), "expect": "something else"},
            {"name": "a cast", "sql": format!("SELECT '{}'::int", secrets[1])},
        ]),
    );
    let verify = host.preseed(&["verify"]);
    verify.expect_code(4);
    let drill = host.preseed(&["drill", "--scratch", sandbox.path("scratch").as_str()]);
    drill.expect_code(4);
    // The journal of the run says what the check returned, to fix it by.
    assert!(
        drill.all_output().contains(secrets[0]),
        "{}",
        drill.all_output()
    );

    let recorded = fs::read_to_string(&last_run).expect("read");
    assert!(recorded.contains("api token") && recorded.contains("a cast"));
    for file in [&host.marker, &last_run, &textfile] {
        let text = fs::read_to_string(file).expect("read");
        for secret in secrets {
            assert!(!text.contains(secret), "{secret} in {file}:\n{text}");
        }
    }
    assert_eq!(mode(&last_run), 0o640);
    assert_eq!(mode(&textfile), 0o644);
    assert_eq!(host.rows(), golden::ROWS);
}

/// A word only the long check of the test below has in its argv.
const LONG_CHECK_TOKEN: &str = "drill_signal_long_check";

/// Issue 15.8: a drill interrupted outside systemd (Ctrl-C, `kill`) left its private server
/// running on the scratch copy, and the copy on disk. Now SIGTERM or SIGINT stops what the drill
/// started and removes the scratch directory — while the checks run and while pgBackRest
/// restores.
#[test]
fn interrupted_drill_leaves_no_server_and_no_scratch() {
    let sandbox = Sandbox::new("drillsignal");
    let mut host = Host::new(&sandbox, bin(), 1);
    host.set("/pgbackrest/process_max", json!(1));
    host.set(
        "/verify/sql",
        json!([{"name": "a long check", "sql": format!("SELECT pg_sleep(600) IS NOT NULL AS {LONG_CHECK_TOKEN}")}]),
    );
    let scratch = sandbox.path("scratch");

    for (signal, moment) in [(Signal::SIGTERM, "checks"), (Signal::SIGINT, "restore")] {
        let child = host
            .preseed_command(&["drill", "--scratch", scratch.as_str()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the drill");
        let engine = i32::try_from(child.id()).expect("pid");
        let pgdata = scratch.join(format!("drill-{engine}/pgdata"));
        let mut server = None;
        testbed::wait_for(
            &format!("the drill's {moment}"),
            Duration::from_secs(300),
            || match moment {
                // The long check runs: the server is up and recovery has ended.
                "checks" if !testbed::pids_with_arg(LONG_CHECK_TOKEN).is_empty() => {
                    server = fs::read_to_string(pgdata.join("postmaster.pid"))
                        .ok()
                        .and_then(|text| text.lines().next()?.trim().parse::<i32>().ok());
                    server.is_some()
                }
                "checks" => false,
                _ => !testbed::pids_with_arg(&format!("--pg1-path={pgdata}")).is_empty(),
            },
        );
        kill(Pid::from_raw(engine), signal).expect("signal the drill");
        let output = child.wait_with_output().expect("wait for the drill");
        let stderr = String::from_utf8_lossy(&output.stderr);
        // The handler cleaned up and the drill ended as the signal would have ended it.
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&output.status),
            Some(signal as i32),
            "{:?}\n{stderr}",
            output.status
        );
        if let Some(pid) = server {
            assert!(
                !alive(pid),
                "the drill's server {pid} still runs:\n{stderr}"
            );
        }
        assert!(
            testbed::pids_with_arg(scratch.as_str()).is_empty(),
            "a process of the scratch copy is left after {signal} during the {moment}:\n{stderr}"
        );
        assert!(
            testbed::tree(&scratch).is_empty(),
            "the scratch copy is left after {signal} during the {moment}: {:?}\n{stderr}",
            testbed::tree(&scratch)
        );
    }
    assert!(testbed::tree(&host.pgdata).is_empty(), "PGDATA untouched");
}
