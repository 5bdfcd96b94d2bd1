//! `scripts/bench`: the numbers in docs/performance.md. Not a test: it prints measurements.
//!
//!   bench rto  [--sizes 256M,1G,2G] [--reps 3] [--compare-at 1G] [--sweep 3,4] [--compress lz4]
//!              [--watch 2s] [--variants A,B,B0,B1] [--bin PATH]
//!   bench boot [--datasets 1,50,500] [--runs 40] [--bin PATH]
//!   bench archiving [--minutes 6]
//!
//! `rto` measures recovery time — empty PGDATA to "PostgreSQL accepts connections, recovery has
//! ended and the data is there" — for A (the seed's runbook: `pgbackrest restore` with
//! pgBackRest's defaults, then `pg_ctl start`), B (`pg-preseed run` with its defaults, start,
//! `pg-preseed verify` in the background), B0 (B with `second_primary.mode = "off"`: no archiving
//! hold, no looks — pg-preseed before issue 14) and B1 (B with process_max = 1, A's parallelism),
//! alternating in one run (the order rotates each repetition), with the repository reset and the
//! page cache dropped before each; and the sequential write bandwidth of the same filesystem.
//! For B the recovery time ends when the server is ready, as for A (polled the same way); when
//! `verify` has written the receipt and released archiving is a column of its own (it watches
//! the repositories for `--watch` after the server is ready). `--sweep` adds B at other
//! process_max values at the compare size; `--compress` backs up with that `compress-type`
//! instead of pgBackRest's default (gz); `--variants` keeps only the named ones.
//! `archiving` measures how often a primary archives — idle or written to every 10 s, with
//! `archive_timeout` off (PostgreSQL's and nixpkgs' default) or at 60 s — what one look at a
//! repository costs (`pgbackrest info`), and how long a finished segment takes to reach the
//! repository: the facts behind `second_primary.watch`'s default.
//! `boot` measures `pg-preseed preflight` (the cost of every healthy boot) with N ZFS datasets,
//! and `pg-preseed run` on the first start of an existing cluster (PGDATA initialized, no
//! receipt directory yet: it gathers, creates the directory, adopts and writes the receipt).

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
            &Rto {
                sizes: option("--sizes").unwrap_or_else(|| "256M,1G,2G".to_owned()),
                reps: option("--reps").and_then(|r| r.parse().ok()).unwrap_or(3),
                compare_at: option("--compare-at").unwrap_or_else(|| "1G".to_owned()),
                sweep: option("--sweep")
                    .map(|list| {
                        list.split(',')
                            .map(|n| {
                                n.parse()
                                    .expect("--sweep takes process_max values like 3,4")
                            })
                            .collect::<Vec<u32>>()
                    })
                    .unwrap_or_default(),
                compress: option("--compress"),
                watch: option("--watch").unwrap_or_else(|| "2s".to_owned()),
                variants: option("--variants"),
            },
        ),
        "archiving" => archiving(
            option("--minutes")
                .and_then(|m| m.parse().ok())
                .unwrap_or(6),
        ),
        "boot" => boot(
            &bin,
            &option("--datasets").unwrap_or_else(|| "1,50,500".to_owned()),
            option("--runs").and_then(|r| r.parse().ok()).unwrap_or(40),
        ),
        _ => {
            eprintln!("usage: bench rto [--sizes 256M,1G,2G] [--reps 3] [--compare-at 1G] [--sweep 3,4] [--compress lz4] [--watch 2s] [--variants A,B,B0,B1] | bench boot [--datasets 1,50,500] [--runs 40] | bench archiving [--minutes 6]");
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
    repo: Utf8PathBuf,
    /// The repository's files right after the backup (see [`reset_repo`]).
    repo_files: std::collections::BTreeSet<String>,
    repo_conf: Utf8PathBuf,
    pgdata: Utf8PathBuf,
    cluster: Cluster,
    bytes: u64,
    branches: u64,
}

/// The harness's pgBackRest config for `cluster` and `repo`, with pgBackRest's default
/// `compress-type` (gz) unless `compress` names another (the harness itself uses lz4).
fn pgbackrest_config(
    sandbox: &Sandbox,
    cluster: &Cluster,
    repo: &Utf8Path,
    compress: Option<&str>,
) -> Pgbackrest {
    let pgbackrest = Pgbackrest::write(sandbox, cluster, &[repo.to_owned()]);
    let line = compress.map_or(String::new(), |c| format!("compress-type={c}\n"));
    let conf = fs::read_to_string(&pgbackrest.config).expect("read");
    fs::write(
        &pgbackrest.config,
        conf.replace("compress-type=lz4\n", &line),
    )
    .expect("write");
    pgbackrest
}

/// A pgbench database of about `size_mib`, backed up with pgBackRest's defaults (gz compression,
/// one process) — what a default installation has in its repository — or with `compress`.
fn build(sandbox: &Sandbox, size_mib: u64, compress: Option<&str>) -> Dataset {
    let source = sandbox.cluster(&sandbox.pg_dir("source"));
    source.initdb();
    let repo = sandbox.shared_dir("repo");
    let pgbackrest = pgbackrest_config(sandbox, &source, &repo, compress);
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
    let restore_conf = pgbackrest_config(sandbox, &cluster, &repo, compress);
    let mut cluster = cluster;
    cluster.pgbackrest_config = Some(restore_conf.config.clone());
    Dataset {
        repo_files: testbed::tree(&repo).into_iter().collect(),
        repo,
        repo_conf: restore_conf.config,
        pgdata,
        cluster,
        bytes,
        branches: scale,
    }
}

/// Puts the repository back as the backup left it. A restored server that promotes archives a
/// new timeline's history file and WAL into the repository, and the next restore's recovery
/// then reads every timeline before it: without this, each run would start slower than the last.
fn reset_repo(data: &Dataset) {
    let mut added: Vec<String> = testbed::tree(&data.repo)
        .into_iter()
        .filter(|path| !data.repo_files.contains(path))
        .collect();
    // Deepest first, so directories are empty when their turn comes.
    added.sort_by(|a, b| b.cmp(a));
    for path in added {
        let path = data.repo.join(path);
        if path.is_dir() {
            fs::remove_dir(&path).expect("rm dir");
        } else {
            fs::remove_file(&path).expect("rm");
        }
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

/// Where one recovery spent its time (seconds).
#[derive(Clone, Copy, Default)]
struct Phases {
    /// Empty PGDATA to ready.
    total: f64,
    /// The `pgbackrest restore` process alone.
    restore: f64,
    /// B only: `pg-preseed run` around the restore (preflight, `pgbackrest info`, claim).
    engine: f64,
    /// `pg_ctl start -w`.
    start: f64,
    /// From started to ready, polled the same way for A and B (B's `verify` runs meanwhile).
    ready: f64,
    /// B only: empty PGDATA to `verify`'s exit (receipt written, archiving released).
    verified: f64,
}

/// A: the runbook by hand.
fn run_a(data: &Dataset) -> Phases {
    let started = Instant::now();
    run_ok(as_postgres("pgbackrest").args([
        &format!("--config={}", data.repo_conf),
        "--stanza=main",
        &format!("--pg1-path={}", data.pgdata),
        "restore",
    ]));
    let restore = started.elapsed().as_secs_f64();
    data.cluster.start();
    let start = started.elapsed().as_secs_f64() - restore;
    wait_ready(data);
    let total = started.elapsed().as_secs_f64();
    Phases {
        total,
        restore,
        engine: 0.0,
        start,
        ready: total - restore - start,
        verified: 0.0,
    }
}

/// B: pg-preseed's path (run, start, verify).
fn run_b(bin: &Utf8Path, config: &Utf8Path, data: &Dataset) -> Phases {
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
    let run_wall = started.elapsed().as_secs_f64();
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).expect("json");
    let restore = report["result"]["duration_seconds"]
        .as_f64()
        .expect("restore duration");
    data.cluster.start();
    let start = started.elapsed().as_secs_f64() - run_wall;
    // The verify unit starts once PostgreSQL is up; the server serves meanwhile.
    let verify = Command::new(bin)
        .args(["--config", config.as_str(), "verify"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("verify");
    wait_ready(data);
    let total = started.elapsed().as_secs_f64();
    let verify = verify.wait_with_output().expect("verify");
    assert!(
        verify.status.success(),
        "pg-preseed verify failed: {}",
        String::from_utf8_lossy(&verify.stdout)
    );
    Phases {
        total,
        restore,
        engine: run_wall - restore,
        start,
        ready: total - run_wall - start,
        verified: started.elapsed().as_secs_f64(),
    }
}

#[derive(Clone, Copy)]
enum Variant {
    /// A: the runbook.
    Runbook,
    /// B: pg-preseed, at its default process_max (`None`) or this one; `guard`: whether
    /// `second_primary` is on (its default) or off (B0).
    Engine {
        process_max: Option<u32>,
        guard: bool,
    },
}

/// The variants measured at one size: A, B, B0, B1 and the sweep at the compare size, else B;
/// only those `keep` names when given.
fn variants(at_compare: bool, sweep: &[u32], keep: Option<&str>) -> Vec<(String, Variant)> {
    let engine = |process_max, guard| Variant::Engine { process_max, guard };
    let mut list = Vec::new();
    if at_compare {
        list.push(("A".to_owned(), Variant::Runbook));
    }
    list.push(("B".to_owned(), engine(None, true)));
    if at_compare {
        list.push(("B0".to_owned(), engine(None, false)));
        list.push(("B1".to_owned(), engine(Some(1), true)));
        for &n in sweep {
            list.push((format!("B{n}"), engine(Some(n), true)));
        }
    }
    if let Some(keep) = keep {
        list.retain(|(name, _)| keep.split(',').any(|k| k == name));
    }
    list
}

/// `bench rto`'s options.
struct Rto {
    sizes: String,
    reps: usize,
    compare_at: String,
    sweep: Vec<u32>,
    compress: Option<String>,
    watch: String,
    variants: Option<String>,
}

#[allow(clippy::too_many_lines)]
fn rto(bin: &Utf8Path, options: &Rto) {
    let Rto {
        sizes,
        reps,
        compare_at,
        sweep,
        compress,
        watch,
        variants: keep,
    } = options;
    let (reps, compress, keep) = (*reps, compress.as_deref(), keep.as_deref());
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let mut table = String::new();
    let _ = writeln!(
        table,
        "second_primary.watch = {watch} for B and its variants but B0.\n"
    );
    let _ = writeln!(table, "| size | variant | runs | total (s) | restore (s) | engine (s) | start (s) | ready (s) | verified (s) | restore MiB/s | vs write bandwidth |");
    let _ = writeln!(table, "|---|---|---|---|---|---|---|---|---|---|---|");
    let mut raw = Vec::new();
    let mut curve = Vec::new();
    for size in sizes.split(',') {
        eprintln!("== {size}");
        let sandbox = Sandbox::new(&format!("bench-{size}"));
        let data = build(&sandbox, mib(size), compress);
        let bandwidth = write_bandwidth(&data.pgdata);
        eprintln!("  write bandwidth {bandwidth:.0} MiB/s");
        let marker = sandbox.shared_dir("state").join("receipt.json");
        let config_for = |name: &str, process_max: Option<u32>, guard: bool| {
            let mut config = json!({
                "pgdata": data.pgdata,
                "marker": marker,
                "postgres": {"bin_dir": pg_bin_dir(), "major": testbed::pg_major()},
                "pgbackrest": {"stanza": "main", "config": data.repo_conf},
                "verify": {"sql": [format!("SELECT count(*) = {} FROM pgbench_branches", data.branches)]},
                "second_primary": if guard { json!({"watch": watch}) } else { json!({"mode": "off"}) }
            });
            if let Some(n) = process_max {
                config["pgbackrest"]["process_max"] = n.into();
            }
            testbed::write_config(&sandbox, &format!("bench-{name}.json"), &config)
        };
        let variants = variants(size == compare_at, sweep, keep);
        let configs: Vec<Option<Utf8PathBuf>> = variants
            .iter()
            .map(|(name, variant)| match variant {
                Variant::Runbook => None,
                Variant::Engine { process_max, guard } => {
                    Some(config_for(name, *process_max, *guard))
                }
            })
            .collect();
        let mut results: Vec<Vec<Phases>> = vec![Vec::new(); variants.len()];
        for rep in 0..reps {
            // Each rep in a rotated order, so no variant always runs first or last.
            for i in (0..variants.len()).map(|k| (k + rep) % variants.len()) {
                let name = &variants[i].0;
                testbed::empty_dir(&data.pgdata);
                reset_repo(&data);
                drop_caches();
                let phases = match &configs[i] {
                    None => run_a(&data),
                    Some(config) => run_b(bin, config, &data),
                };
                stop(&data);
                eprintln!(
                    "  rep {rep} {name}: total {:.2}s = engine {:.2} + restore {:.2} + start {:.2} + ready {:.2}; verified {:.2}",
                    phases.total, phases.engine, phases.restore, phases.start, phases.ready, phases.verified
                );
                raw.push(json!({"size": size, "variant": name, "rep": rep, "total": phases.total,
                    "restore": phases.restore, "engine": phases.engine, "start": phases.start, "ready": phases.ready,
                    "verified": phases.verified}));
                results[i].push(phases);
            }
        }
        let mut medians = std::collections::BTreeMap::new();
        for ((name, variant), runs) in variants.iter().zip(&results) {
            let med = |f: fn(&Phases) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
            let m = Phases {
                total: med(|p| p.total),
                restore: med(|p| p.restore),
                engine: med(|p| p.engine),
                start: med(|p| p.start),
                ready: med(|p| p.ready),
                verified: med(|p| p.verified),
            };
            #[allow(clippy::cast_precision_loss)]
            let throughput = (data.bytes >> 20) as f64 / m.restore;
            let label = match variant {
                Variant::Runbook => "A: pgbackrest restore (defaults) + pg_ctl start".to_owned(),
                Variant::Engine {
                    process_max: None,
                    guard: true,
                } => format!("B: pg-preseed run + start + verify (process_max {cpus})"),
                Variant::Engine {
                    process_max: None,
                    guard: false,
                } => format!("{name}: B with second_primary.mode = \"off\""),
                Variant::Engine {
                    process_max: Some(n),
                    ..
                } => format!("{name}: B with process_max {n}"),
            };
            let verified = if matches!(variant, Variant::Runbook) {
                "–".to_owned()
            } else {
                format!("{:.2}", m.verified)
            };
            let _ = writeln!(
                table,
                "| {size} ({} MiB) | {label} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {verified} | {throughput:.0} | {:.0} % of {bandwidth:.0} MiB/s |",
                data.bytes >> 20,
                runs.len(),
                m.total,
                m.restore,
                m.engine,
                m.start,
                m.ready,
                100.0 * throughput / bandwidth
            );
            if name == "B" {
                curve.push((size.to_owned(), data.bytes >> 20, m));
            }
            medians.insert(name.clone(), m);
        }
        if let (Some(b), Some(b0)) = (medians.get("B"), medians.get("B0")) {
            let added = b.total - b0.total;
            let _ = writeln!(
                table,
                "\nAt {size}: the guard against a second primary adds {:+.3} s to the recovery time ({:+.1} % of B0's {:.2} s; `run` alone {:+.3} s: the look after the restore and the hold); archiving is released {:.2} s after the server is ready (B0: {:.2} s).\n",
                added,
                100.0 * added / b0.total,
                b0.total,
                b.engine - b0.engine,
                b.verified - b.total,
                b0.verified - b0.total,
            );
        }
        if let (Some(a), Some(b), Some(b1)) =
            (medians.get("A"), medians.get("B"), medians.get("B1"))
        {
            let _ = writeln!(
                table,
                "\nAt {size}: B1/A = {:.3} (the engine's own overhead at equal parallelism); A/B = {:.2}× (B's defaults vs the runbook); restore alone A/B = {:.2}×.\n",
                b1.total / a.total,
                a.total / b.total,
                a.restore / b.restore
            );
        }
    }
    let _ = writeln!(table, "\nScaling (B, defaults):\n\n| size | MiB | total (s) | restore (s) | fixed part: total − restore (s) | restore s per GiB |\n|---|---|---|---|---|---|");
    for (size, mib, m) in &curve {
        #[allow(clippy::cast_precision_loss)]
        let per_gib = m.restore / (*mib as f64 / 1024.0);
        let _ = writeln!(
            table,
            "| {size} | {mib} | {:.2} | {:.2} | {:.2} | {per_gib:.2} |",
            m.total,
            m.restore,
            m.total - m.restore
        );
    }
    println!("{table}");
    println!("raw: {}", serde_json::to_string(&raw).expect("json"));
}

fn boot(bin: &Utf8Path, counts: &str, runs: usize) {
    let mut table = String::new();
    let _ = writeln!(table, "| datasets | mounts in mountinfo | preflight median (ms) | p95 (ms) | `zfs list` alone median (ms) | peak RSS (KiB) | `run` (adopt, new receipt directory) median (ms) | p95 (ms) |");
    let _ = writeln!(table, "|---|---|---|---|---|---|---|---|");
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
        let (run_ms, run_p95_ms) = first_run(bin, &sandbox, &pgdata, &pool, runs);
        eprintln!("  preflight {median_ms:.1} ms (p95 {p95_ms:.1}), zfs list {zfs_ms:.1} ms, rss {rss} KiB, {mounts} mounts; run {run_ms:.1} ms (p95 {run_p95_ms:.1})");
        let _ = writeln!(
            table,
            "| {count} | {mounts} | {median_ms:.1} | {p95_ms:.1} | {zfs_ms:.1} | {rss} | {run_ms:.1} | {run_p95_ms:.1} |"
        );
        drop(pool);
    }
    println!("{table}");
}

/// `pg-preseed run` on the first start of an existing cluster: PGDATA (on its dataset) holds a
/// cluster, the receipt's directory does not exist yet. Each run creates the directory, takes
/// the lock, gathers the facts, adopts the cluster and writes the receipt; the directory is
/// removed again before the next. Median and p95 in milliseconds.
fn first_run(
    bin: &Utf8Path,
    sandbox: &Sandbox,
    pgdata: &Utf8Path,
    pool: &Pool,
    runs: usize,
) -> (f64, f64) {
    sandbox.cluster(pgdata).initdb();
    let state = sandbox.path("run-state");
    let config = testbed::write_config(
        sandbox,
        "boot-run.json",
        &json!({
            "pgdata": pgdata,
            "marker": state.join("receipt.json"),
            "postgres": {"bin_dir": pg_bin_dir(), "major": testbed::pg_major()},
            "require_mount": {"dataset": pool.dataset("pgdata")},
            "pgbackrest": {"stanza": "main"}
        }),
    );
    let args = ["--config", config.as_str(), "run"];
    let mut samples = Vec::new();
    // One warm-up, checked, then the measured runs.
    for round in 0..=runs {
        let _ = fs::remove_dir_all(&state);
        let started = Instant::now();
        let output = Command::new(bin).args(args).output().expect("run");
        let elapsed = started.elapsed().as_secs_f64() * 1000.0;
        assert!(
            output.status.success(),
            "run did not adopt: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if round > 0 {
            samples.push(elapsed);
        }
    }
    samples.sort_by(f64::total_cmp);
    let p95 = samples[(samples.len() * 95 / 100).min(samples.len() - 1)];
    (median(&mut samples), p95)
}

/// One primary of `bench archiving`.
struct Archiver {
    name: &'static str,
    cluster: Cluster,
    pgbackrest: Pgbackrest,
    write_every: Option<f64>,
}

fn last_archived_wal(cluster: &Cluster) -> String {
    cluster.psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
}

/// Writes one row, switches to a new segment and waits until the closed one is archived.
fn switch_and_wait(cluster: &Cluster) {
    cluster.psql("INSERT INTO t VALUES (1)");
    let segment = cluster.psql("SELECT pg_walfile_name(pg_current_wal_lsn())");
    cluster.psql("SELECT pg_switch_wal()");
    testbed::wait_for(
        "the segment to be archived",
        Duration::from_secs(60),
        || last_archived_wal(cluster) >= segment,
    );
}

/// How often a primary archives (idle or written to every 10 s; `archive_timeout` off or 60 s),
/// what one look at a repository costs, how long a finished segment takes to reach it.
#[allow(clippy::cast_precision_loss)]
fn archiving(minutes: u64) {
    let cases: [(&'static str, u32, Option<f64>); 4] = [
        ("idle", 0, None),
        ("idle", 60, None),
        ("a write every 10 s", 0, Some(10.0)),
        ("a write every 10 s", 60, Some(10.0)),
    ];
    let sandboxes: Vec<Sandbox> = (0..cases.len())
        .map(|i| Sandbox::new(&format!("bench-archiving-{i}")))
        .collect();
    let mut primaries = Vec::new();
    for (sandbox, (name, timeout, write_every)) in sandboxes.iter().zip(cases) {
        let mut cluster = sandbox.cluster(&sandbox.pg_dir("pgdata"));
        cluster.initdb();
        let conf = cluster.pgdata.join("postgresql.conf");
        let mut text = fs::read_to_string(&conf).expect("read postgresql.conf");
        let _ = writeln!(text, "archive_timeout = {timeout}");
        fs::write(&conf, text).expect("write postgresql.conf");
        let repo = sandbox.shared_dir("repo");
        let pgbackrest = Pgbackrest::write(sandbox, &cluster, &[repo]);
        cluster.pgbackrest_config = Some(pgbackrest.config.clone());
        cluster.start();
        pgbackrest.run(&["stanza-create"]);
        cluster.psql("CREATE TABLE t (i int)");
        // Everything written so far archived: the measurement starts from a quiet archive.
        switch_and_wait(&cluster);
        primaries.push((
            Archiver {
                name,
                cluster,
                pgbackrest,
                write_every,
            },
            timeout,
        ));
    }
    eprintln!(
        "== watching {} primaries for {minutes} min",
        primaries.len()
    );
    let started = Instant::now();
    let epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let mut seen: Vec<Vec<f64>> = vec![Vec::new(); primaries.len()];
    let mut last: Vec<String> = primaries
        .iter()
        .map(|(p, _)| last_archived_wal(&p.cluster))
        .collect();
    let mut next_write: Vec<f64> = primaries
        .iter()
        .map(|(p, _)| p.write_every.unwrap_or(f64::INFINITY) / 2.0)
        .collect();
    #[allow(clippy::cast_precision_loss)]
    let until = (minutes * 60) as f64;
    while started.elapsed().as_secs_f64() < until {
        let elapsed = started.elapsed().as_secs_f64();
        for (i, (primary, _)) in primaries.iter().enumerate() {
            if let Some(every) = primary.write_every {
                if elapsed >= next_write[i] {
                    primary.cluster.psql("INSERT INTO t VALUES (1)");
                    next_write[i] += every;
                }
            }
            let row = primary.cluster.psql(
                "SELECT coalesce(last_archived_wal, '') || ' ' || \
                 coalesce(extract(epoch FROM last_archived_time)::text, '0') FROM pg_stat_archiver",
            );
            let (wal, at) = row.split_once(' ').unwrap_or((&row, "0"));
            if wal != last[i] {
                last[i] = wal.to_owned();
                seen[i].push(at.parse::<f64>().unwrap_or(epoch) - epoch);
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let mut table = String::new();
    let _ = writeln!(table, "| primary | archive_timeout | segments archived in {minutes} min | first after (s) | between archives: median / max (s) |");
    let _ = writeln!(table, "|---|---|---|---|---|");
    for ((primary, timeout), times) in primaries.iter().zip(&seen) {
        let mut gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
        let max = gaps.iter().copied().fold(f64::NAN, f64::max);
        let gaps_text = if gaps.is_empty() {
            "–".to_owned()
        } else {
            format!("{:.1} / {max:.1}", median(&mut gaps))
        };
        let _ = writeln!(
            table,
            "| {} | {} | {} | {} | {gaps_text} |",
            primary.name,
            if *timeout == 0 {
                "off (0)".to_owned()
            } else {
                format!("{timeout} s")
            },
            times.len(),
            times.first().map_or("–".to_owned(), |t| format!("{t:.1}")),
        );
        eprintln!("  {} / {timeout}: {times:?}", primary.name);
    }

    // One look: `pgbackrest info` of one posix repository (what pg-preseed runs per repository).
    let (probe, _) = &primaries[3];
    let mut looks: Vec<f64> = (0..20)
        .map(|_| {
            let started = Instant::now();
            probe.pgbackrest.run(&["--repo=1", "--output=json", "info"]);
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    looks.sort_by(f64::total_cmp);
    let look_p95 = looks[(looks.len() * 95 / 100).min(looks.len() - 1)];
    // A finished segment to the repository: pg_switch_wal() until last_archived_wal shows it.
    let mut pushes: Vec<f64> = (0..10)
        .map(|_| {
            probe.cluster.psql("INSERT INTO t VALUES (1)");
            let segment = probe
                .cluster
                .psql("SELECT pg_walfile_name(pg_current_wal_lsn())");
            let started = Instant::now();
            probe.cluster.psql("SELECT pg_switch_wal()");
            while last_archived_wal(&probe.cluster) < segment {
                std::thread::sleep(Duration::from_millis(5));
            }
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    let push_max = pushes.iter().copied().fold(f64::NAN, f64::max);
    let _ = writeln!(
        table,
        "\nOne look at a repository (`pgbackrest info`, posix, 20 runs): median {:.0} ms, p95 {look_p95:.0} ms.\n\
         A finished segment reaching the repository (pg_switch_wal() to last_archived_wal, 10 runs): median {:.0} ms, max {push_max:.0} ms.",
        median(&mut looks),
        median(&mut pushes)
    );
    println!("{table}");
}
