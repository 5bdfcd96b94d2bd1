//! `scripts/demo`: the real thing on throwaway data. A PostgreSQL cluster and a pgBackRest
//! repository in a temporary directory, a backup, then the disaster: a new machine, a wiped
//! PGDATA with the receipt left behind, and the incident's stacked mounts — with pg-preseed
//! restoring what is recoverable and refusing what is dangerous. Narrated, then cleaned up.
//!
//!   demo [--bin PATH-TO-pg-preseed] [--keep]

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use camino::{Utf8Path, Utf8PathBuf};
use testbed::{golden, mounts, Cluster, Host, Pgbackrest, Sandbox};

fn main() {
    let mut bin = None;
    let mut keep = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bin" => bin = args.next().map(Utf8PathBuf::from),
            "--keep" => keep = true,
            other => {
                eprintln!("usage: demo [--bin PATH] [--keep] (unknown argument {other})");
                std::process::exit(2);
            }
        }
    }
    let bin = bin.unwrap_or_else(|| {
        let me =
            Utf8PathBuf::from_path_buf(std::env::current_exe().expect("own path")).expect("utf-8");
        me.with_file_name("pg-preseed")
    });
    assert!(
        bin.is_file(),
        "pg-preseed not found at {bin}: build it first (scripts/demo does)"
    );
    if keep {
        std::env::set_var("TESTBED_KEEP", "1");
    }
    testbed::require_root();
    let started = Instant::now();
    let sandbox = Sandbox::new("demo");
    run(&sandbox, &bin);
    println!();
    if keep {
        println!("Kept everything under {} (servers stopped).", sandbox.root);
    } else {
        println!(
            "Cleaning up {} (servers stopped, mounts removed, files deleted).",
            sandbox.root
        );
    }
    drop(sandbox);
    println!("Demo finished in {:.0}s.", started.elapsed().as_secs_f64());
}

fn step(number: u32, text: &str) {
    println!("\n[{number}/6] {text}");
}

fn say(text: &str) {
    for line in text.lines() {
        println!("      {line}");
    }
}

/// Shows pg-preseed's own words, indented, with the command that produced them.
fn show(host: &Host<'_>, args: &[&str]) -> i32 {
    let run = host.preseed_text(args);
    say(&format!(
        "$ pg-preseed {}   (exit {})",
        args.join(" "),
        run.code
    ));
    for line in run.stdout.lines() {
        println!("        {line}");
    }
    run.code
}

fn rows(host: &Host<'_>) -> String {
    host.cluster
        .psql(&format!("SELECT count(*) FROM {}", golden::TABLE))
}

fn run(sandbox: &Sandbox, bin: &Utf8Path) {
    println!(
        "pg-preseed demo: the disaster-recovery job on throwaway data in {}",
        sandbox.root
    );

    step(
        1,
        "A PostgreSQL cluster with a table of 10,000 rows, and a pgBackRest repository.",
    );
    let source = sandbox.cluster(&sandbox.pg_dir("source"));
    source.initdb();
    let repo = sandbox.shared_dir("repository");
    let source_repo = Pgbackrest::write(sandbox, &source, std::slice::from_ref(&repo));
    let mut source = source;
    source.pgbackrest_config = Some(source_repo.config.clone());
    source.start();
    source_repo.run(&["stanza-create"]);
    source.psql(&format!(
        "CREATE TABLE {t} (id bigint PRIMARY KEY, payload text); INSERT INTO {t} SELECT i, md5(i::text) FROM generate_series(1, {n}) i;",
        t = golden::TABLE,
        n = golden::ROWS
    ));
    say(&format!(
        "cluster {} ({} rows), repository {repo}",
        source.pgdata,
        rows_of(&source)
    ));

    step(
        2,
        "A full backup with pgBackRest, a few more writes (their WAL archived); then the original\nserver goes away.",
    );
    source_repo.run(&["--type=full", "backup"]);
    source.psql(
        "CREATE TABLE late_writes (id int, at timestamptz DEFAULT clock_timestamp()); \
         INSERT INTO late_writes SELECT generate_series(1, 100);",
    );
    let segment = source.psql("SELECT pg_walfile_name(pg_current_wal_lsn())");
    source.psql("SELECT pg_switch_wal()");
    testbed::wait_for("the WAL to be archived", Duration::from_secs(60), || {
        source.psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") >= segment
    });
    source.stop();
    say("backup taken, 100 later rows archived as WAL; from here on the only copy of the data is\nin the repository");

    step(
        3,
        "A new machine: PGDATA is its own, empty filesystem (a ZFS dataset on a real host, tmpfs\nhere); no receipt. The boot units run pg-preseed.",
    );
    let pgdata = sandbox.path("pgdata");
    mount_fresh(&pgdata, "tank/services/postgresql");
    let cluster = sandbox.cluster(&pgdata);
    // The same repository, seen from the new machine (its pgbackrest.conf names its PGDATA).
    let host_repo = Pgbackrest::write(sandbox, &cluster, std::slice::from_ref(&repo));
    let mut host = Host::from_parts(sandbox, bin, cluster, host_repo);
    // The post-restore hook: once per verified restore, before the receipt.
    host.set(
        "/post_restore",
        serde_json::json!({"sql": ["ANALYZE"], "timeout": "10min"}),
    );
    show(&host, &["plan"]);
    show(&host, &["run"]);
    host.cluster.start();
    show(&host, &["verify"]);
    say(&format!(
        "PostgreSQL is up with {} rows; the receipt is {}",
        rows(&host),
        host.marker
    ));

    step(
        4,
        "Disaster drill: PostgreSQL stopped, PGDATA emptied with rm -rf. The receipt stays where it\nis — the old runbook's \"Delete marker (CRITICAL!)\" step is gone.",
    );
    host.wipe_pgdata();
    show(&host, &["run"]);
    host.cluster.start();
    show(&host, &["verify"]);
    say(&format!(
        "back with {} rows, nothing deleted by hand",
        rows(&host)
    ));

    step(
        5,
        "The incident: a stray filesystem on PGDATA holding the old marker, the real one mounted\nover it and emptied by the drill (two ZFS datasets on one mountpoint; tmpfs here).",
    );
    host.cluster.stop();
    umount(&pgdata);
    mounts::tmpfs(&pgdata, 256, "tank/services/postgres");
    fs::write(pgdata.join(".preseed-completed"), b"").expect("the old marker");
    mount_fresh(&pgdata, "tank/services/postgresql");
    let code = show(&host, &["preflight"]);
    say(&format!(
        "preflight exits {code}: postgresql.service requires it, so PostgreSQL stays down and no\n\
         initdb can create an empty database; the restore unit refuses on its own too:"
    ));
    let code = show(&host, &["run"]);
    say(&format!(
        "exit {code}; PG_VERSION present: {} — nothing was written",
        pgdata.join("PG_VERSION").exists()
    ));

    step(
        6,
        "The fix the finding names: take the stray filesystem away; the next start restores.",
    );
    umount(&pgdata);
    umount(&pgdata);
    mount_fresh(&pgdata, "tank/services/postgresql");
    show(&host, &["preflight"]);
    show(&host, &["run"]);
    host.cluster.start();
    show(&host, &["verify"]);
    say(&format!(
        "{} rows; the receipt records the restored cluster",
        rows(&host)
    ));
    show(&host, &["status"]);
    host.cluster.stop();
}

fn rows_of(cluster: &Cluster) -> String {
    cluster.psql(&format!("SELECT count(*) FROM {}", golden::TABLE))
}

/// An empty filesystem at `path` for PGDATA, owned by postgres with mode 0700.
fn mount_fresh(path: &Utf8Path, source: &str) {
    mounts::tmpfs(path, 256, source);
    testbed::chown_postgres(path);
    fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o700)).expect("chmod");
}

fn umount(path: &Utf8Path) {
    testbed::run_ok(Command::new("umount").arg(path.as_str()));
}
