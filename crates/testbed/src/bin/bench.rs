//! `scripts/bench`: the numbers in docs/performance.md. Not a test: it prints measurements.
//!
//!   bench rto  [--sizes 256M,1G,2G] [--reps 3] [--compare-at 1G] [--bin PATH]
//!   bench boot [--datasets 1,50,500] [--runs 40] [--bin PATH]
//!
//! `rto` measures recovery time — empty PGDATA to "PostgreSQL accepts connections, recovery has
//! ended and the data is there" — for A (the seed's runbook: `pgbackrest restore` with pgBackRest's
//! defaults, then `pg_ctl start`), B (`pg-preseed run` with its defaults, start, `pg-preseed
//! verify`) and B1 (B with process_max = 1, A's parallelism), alternating A, B, B1 in one run, with
//! the page cache dropped before each; and the sequential write bandwidth of the same filesystem.
//! `boot` measures `pg-preseed preflight` (the cost of every healthy boot) with N ZFS datasets.

use std::fmt::Write as _;
use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use camino::{Utf8Path, Utf8PathBuf};
use serde_json::json;
use testbed::{
    as_postgres, pg_bin_dir, run_ok, zfs::Pool, Cluster, Pgbackrest, Sandbox, PG_USER, PORT,
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().cloned().unwrap_or_default();
    let option = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let bin = option("--bin").map_or_else(
        || {
            let me = Utf8PathBuf::from_path_buf(std::env::current_exe().expect("own path"))
                .expect("utf-8");
            me.with_file_name("pg-preseed")
        },
        Utf8PathBuf::from,
    );
    testbed::require_root();
    match mode.as_str() {
        "rto" => rto(
            &bin,
            &option("--sizes").unwrap_or_else(|| "256M,1G,2G".to_owned()),
            option("--reps").and_then(|r| r.parse().ok()).unwrap_or(3),
            &option("--compare-at").unwrap_or_else(|| "1G".to_owned()),
        ),
        "boot" => boot(
            &bin,
            &option("--datasets").unwrap_or_else(|| "1,50,500".to_owned()),
            option("--runs").and_then(|r| r.parse().ok()).unwrap_or(40),
        ),
        _ => {
            eprintln!("usage: bench rto [--sizes 256M,1G,2G] [--reps 3] [--compare-at 1G] | bench boot [--datasets 1,50,500] [--runs 40]");
            std::process::exit(2);
        }
    }
}

fn mib(size: &str) -> u64 {
    let (number, unit) = size.split_at(size.len() - 1);
    let number: u64 = number.parse().expect("a size like 256M or 2G");
    match unit {
        "M" => number,
        "G" => number * 1024,
        _ => panic!("size {size}: use M or G"),
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        f64::midpoint(values[n / 2 - 1], values[n / 2])
    }
}

fn drop_caches() {
    run_ok(&mut Command::new("sync"));
    let _ = fs::write("/proc/sys/vm/drop_caches", "3\n");
}

fn empty(dir: &Utf8Path) {
    for entry in fs::read_dir(dir).expect("read").flatten() {
        let path = entry.path();
        if path.is_dir() {
            fs::remove_dir_all(&path).expect("rm");
        } else {
            fs::remove_file(&path).expect("rm");
        }
    }
}

/// Sequential write bandwidth of the filesystem holding `dir` (MiB/s, dd with fdatasync).
fn write_bandwidth(dir: &Utf8Path) -> f64 {
    let mut runs = Vec::new();
    for _ in 0..3 {
        let file = dir.join("dd.bench");
        drop_caches();
        let started = Instant::now();
        run_ok(Command::new("dd").args([
            "if=/dev/zero",
            &format!("of={file}"),
            "bs=1M",
            "count=2048",
            "conv=fdatasync",
        ]));
        runs.push(2048.0 / started.elapsed().as_secs_f64());
        fs::remove_file(&file).expect("rm");
    }
    median(&mut runs)
}

struct Dataset {
    repo_conf: Utf8PathBuf,
    pgdata: Utf8PathBuf,
    cluster: Cluster,
    bytes: u64,
    branches: u64,
}

/// A pgbench database of about `size_mib`, backed up with pgBackRest's defaults (gz compression,
/// one process): what a default installation has in its repository.
fn build(sandbox: &Sandbox, size_mib: u64) -> Dataset {
    let source = sandbox.cluster(&sandbox.pg_dir("source"));
    source.initdb();
    let repo = sandbox.shared_dir("repo");
    let pgbackrest = Pgbackrest::write(sandbox, &source, std::slice::from_ref(&repo));
    // pgBackRest's defaults for the repository: no compress-type override.
    let conf = fs::read_to_string(&pgbackrest.config).expect("read");
    fs::write(&pgbackrest.config, conf.replace("compress-type=lz4\n", "")).expect("write");
    let mut source = source;
    source.pgbackrest_config = Some(pgbackrest.config.clone());
    source.start();
    pgbackrest.run(&["stanza-create"]);
    // pgbench: about 15 MiB per scale unit with indexes.
    let scale = (size_mib / 15).max(1);
    run_ok(as_postgres(pg_bin_dir().join("pgbench")).args([
        "-q",
        "-i",
        "-s",
        &scale.to_string(),
        "-h",
        source.socket_dir.as_str(),
        "-p",
        &PORT.to_string(),
        "-U",
        PG_USER,
        "postgres",
    ]));
    let bytes: u64 = source
        .psql("SELECT pg_database_size('postgres')")
        .parse()
        .expect("size");
    let started = Instant::now();
    pgbackrest.run(&["--type=full", "backup"]);
    eprintln!(
        "  built scale {scale} ({} MiB), backup in {:.0}s",
        bytes >> 20,
        started.elapsed().as_secs_f64()
    );
    source.stop();
    let pgdata = sandbox.pg_dir("restored");
    let cluster = sandbox.cluster(&pgdata);
    // The restore side: same repository, PGDATA elsewhere.
    let restore_conf = Pgbackrest::write(sandbox, &cluster, std::slice::from_ref(&repo));
    let conf = fs::read_to_string(&restore_conf.config).expect("read");
    fs::write(
        &restore_conf.config,
        conf.replace("compress-type=lz4\n", ""),
    )
    .expect("write");
    let mut cluster = cluster;
    cluster.pgbackrest_config = Some(restore_conf.config.clone());
    Dataset {
        repo_conf: restore_conf.config,
        pgdata,
        cluster,
        bytes,
        branches: scale,
    }
}

/// Waits until the restored server accepts connections, has left recovery and shows the data.
fn wait_ready(data: &Dataset) {
    let deadline = Instant::now() + Duration::from_secs(3600);
    loop {
        let ready = data.cluster.try_psql(
            "SELECT NOT pg_is_in_recovery() AND (SELECT count(*) FROM pgbench_branches) > 0",
        );
        if ready.as_deref() == Some("t") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the restored server never became ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stop(data: &Dataset) {
    run_ok(as_postgres(pg_bin_dir().join("pg_ctl")).args([
        "-D",
        data.pgdata.as_str(),
        "-m",
        "immediate",
        "-w",
        "stop",
    ]));
}

/// A: the runbook by hand. Returns (total seconds, restore seconds).
fn run_a(data: &Dataset) -> (f64, f64) {
    let started = Instant::now();
    run_ok(as_postgres("pgbackrest").args([
        &format!("--config={}", data.repo_conf),
        "--stanza=main",
        &format!("--pg1-path={}", data.pgdata),
        "restore",
    ]));
    let restore = started.elapsed().as_secs_f64();
    data.cluster.start();
    wait_ready(data);
    (started.elapsed().as_secs_f64(), restore)
}

/// B: pg-preseed's path (run, start, verify). Returns (total seconds, restore seconds).
fn run_b(bin: &Utf8Path, config: &Utf8Path, data: &Dataset) -> (f64, f64) {
    let started = Instant::now();
    let run = Command::new(bin)
        .args(["--config", config.as_str(), "--json", "run"])
        .output()
        .expect("run");
    assert!(
        run.status.success(),
        "pg-preseed run failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).expect("json");
    let restore = report["result"]["duration_seconds"]
        .as_f64()
        .expect("restore duration");
    data.cluster.start();
    let verify = Command::new(bin)
        .args(["--config", config.as_str(), "verify"])
        .output()
        .expect("verify");
    assert!(
        verify.status.success(),
        "pg-preseed verify failed: {}",
        String::from_utf8_lossy(&verify.stdout)
    );
    (started.elapsed().as_secs_f64(), restore)
}

fn rto(bin: &Utf8Path, sizes: &str, reps: usize, compare_at: &str) {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let mut table = String::new();
    let _ = writeln!(table, "| size | variant | runs | median total (s) | median restore (s) | restore MiB/s | vs write bandwidth |");
    let _ = writeln!(table, "|---|---|---|---|---|---|---|");
    let mut raw = Vec::new();
    let mut curve = Vec::new();
    for size in sizes.split(',') {
        eprintln!("== {size}");
        let sandbox = Sandbox::new(&format!("bench-{size}"));
        let data = build(&sandbox, mib(size));
        let bandwidth = write_bandwidth(&data.pgdata);
        eprintln!("  write bandwidth {bandwidth:.0} MiB/s");
        let marker = sandbox.shared_dir("state").join("receipt.json");
        let config_for = |process_max: Option<u32>| {
            let mut config = json!({
                "pgdata": data.pgdata,
                "marker": marker,
                "postgres": {"bin_dir": pg_bin_dir(), "major": testbed::pg_major()},
                "pgbackrest": {"stanza": "main", "config": data.repo_conf},
                "verify": {"sql": [format!("SELECT count(*) = {} FROM pgbench_branches", data.branches)]}
            });
            if let Some(n) = process_max {
                config["pgbackrest"]["process_max"] = n.into();
            }
            testbed::write_config(
                &sandbox,
                &format!(
                    "bench-{}.json",
                    process_max.map_or("default".to_owned(), |n| n.to_string())
                ),
                &config,
            )
        };
        let (default_config, one_config) = (config_for(None), config_for(Some(1)));
        let variants: Vec<&str> = if size == compare_at {
            vec!["A", "B", "B1"]
        } else {
            vec!["B"]
        };
        let mut results: std::collections::BTreeMap<&str, Vec<(f64, f64)>> =
            std::collections::BTreeMap::new();
        for rep in 0..reps {
            for &variant in &variants {
                empty(&data.pgdata);
                drop_caches();
                let (total, restore) = match variant {
                    "A" => run_a(&data),
                    "B" => run_b(bin, &default_config, &data),
                    _ => run_b(bin, &one_config, &data),
                };
                stop(&data);
                eprintln!("  rep {rep} {variant}: total {total:.1}s, restore {restore:.1}s");
                raw.push(json!({"size": size, "variant": variant, "rep": rep, "total": total, "restore": restore}));
                results.entry(variant).or_default().push((total, restore));
            }
        }
        for (variant, runs) in &results {
            let mut totals: Vec<f64> = runs.iter().map(|r| r.0).collect();
            let mut restores: Vec<f64> = runs.iter().map(|r| r.1).collect();
            let (total, restore) = (median(&mut totals), median(&mut restores));
            #[allow(clippy::cast_precision_loss)]
            let throughput = (data.bytes >> 20) as f64 / restore;
            let name = match *variant {
                "A" => "A: pgbackrest restore (defaults) + pg_ctl start".to_owned(),
                "B" => format!("B: pg-preseed run + start + verify (process_max {cpus})"),
                _ => "B1: pg-preseed, process_max 1".to_owned(),
            };
            let _ = writeln!(
                table,
                "| {size} ({} MiB) | {name} | {} | {total:.1} | {restore:.1} | {throughput:.0} | {:.0} % of {bandwidth:.0} MiB/s |",
                data.bytes >> 20,
                runs.len(),
                100.0 * throughput / bandwidth
            );
            if *variant == "B" {
                curve.push((size.to_owned(), data.bytes >> 20, total));
            }
        }
        if let (Some(a), Some(b), Some(b1)) =
            (results.get("A"), results.get("B"), results.get("B1"))
        {
            let med =
                |runs: &Vec<(f64, f64)>| median(&mut runs.iter().map(|r| r.0).collect::<Vec<_>>());
            let (a, b, b1) = (med(a), med(b), med(b1));
            let _ = writeln!(
                table,
                "\nAt {size}: B1/A = {:.3} (the engine's own overhead at equal parallelism); A/B = {:.2}× (B's defaults vs the runbook).\n",
                b1 / a,
                a / b
            );
        }
    }
    let _ = writeln!(table, "\nScaling (B, defaults):\n\n| size | MiB | median total (s) | s per GiB |\n|---|---|---|---|");
    for (size, mib, total) in &curve {
        #[allow(clippy::cast_precision_loss)]
        let per_gib = total / (*mib as f64 / 1024.0);
        let _ = writeln!(table, "| {size} | {mib} | {total:.1} | {per_gib:.1} |");
    }
    println!("{table}");
    println!("raw: {}", serde_json::to_string(&raw).expect("json"));
}

fn boot(bin: &Utf8Path, counts: &str, runs: usize) {
    let mut table = String::new();
    let _ = writeln!(table, "| datasets | mounts in mountinfo | preflight median (ms) | p95 (ms) | `zfs list` alone median (ms) | peak RSS (KiB) |");
    let _ = writeln!(table, "|---|---|---|---|---|---|");
    for count in counts.split(',') {
        let count: usize = count.parse().expect("a number");
        eprintln!("== {count} datasets");
        let sandbox = Sandbox::new(&format!("bench-boot-{count}"));
        let pool = Pool::create(&sandbox, "bb");
        let pgdata = sandbox.path("pgdata");
        pool.create_dataset("pgdata", Some(&pgdata));
        testbed::chown_postgres(&pgdata);
        for i in 1..count {
            pool.create_dataset(
                &format!("other{i}"),
                Some(&sandbox.path(&format!("mnt/other{i}"))),
            );
        }
        let config = testbed::write_config(
            &sandbox,
            "boot.json",
            &json!({
                "pgdata": pgdata,
                "marker": sandbox.shared_dir("state").join("receipt.json"),
                "postgres": {"bin_dir": pg_bin_dir(), "major": testbed::pg_major()},
                "require_mount": {"dataset": pool.dataset("pgdata")},
                "pgbackrest": {"stanza": "main"}
            }),
        );
        let time = |program: &str, args: &[&str]| {
            let mut samples: Vec<f64> = (0..runs)
                .map(|_| {
                    let started = Instant::now();
                    let status = Command::new(program)
                        .args(args)
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .expect("run");
                    assert!(
                        status.success() || status.code() == Some(3),
                        "{program} failed"
                    );
                    started.elapsed().as_secs_f64() * 1000.0
                })
                .collect();
            samples.sort_by(f64::total_cmp);
            let p95 = samples[(samples.len() * 95 / 100).min(samples.len() - 1)];
            (median(&mut samples), p95)
        };
        let preflight_args = ["--config", config.as_str(), "preflight"];
        // Warm up, and check the layout is clean.
        let check = Command::new(bin)
            .args(preflight_args)
            .output()
            .expect("preflight");
        assert!(
            check.status.success(),
            "preflight not clean: {}",
            String::from_utf8_lossy(&check.stdout)
        );
        let (median_ms, p95_ms) = time(bin.as_str(), &preflight_args);
        let (zfs_ms, _) = time("zfs", &pg_preseed::zfs::LIST_ARGS);
        let rss = Command::new("/usr/bin/time")
            .args(["-f", "%M"])
            .arg(bin.as_str())
            .args(preflight_args)
            .output()
            .expect("/usr/bin/time (apt-get install time)");
        let rss = String::from_utf8_lossy(&rss.stderr)
            .lines()
            .last()
            .unwrap_or("?")
            .trim()
            .to_owned();
        let mounts = fs::read_to_string("/proc/self/mountinfo")
            .expect("mountinfo")
            .lines()
            .count();
        eprintln!("  preflight {median_ms:.1} ms (p95 {p95_ms:.1}), zfs list {zfs_ms:.1} ms, rss {rss} KiB, {mounts} mounts");
        let _ = writeln!(
            table,
            "| {count} | {mounts} | {median_ms:.1} | {p95_ms:.1} | {zfs_ms:.1} | {rss} |"
        );
        drop(pool);
    }
    println!("{table}");
}
