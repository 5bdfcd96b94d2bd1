//! A real S3-protocol server for the tests: s3s-fs (installed from the crate registry with
//! `cargo install s3s-fs --features binary`; scripts/deps.sh does it) behind stunnel for TLS,
//! since pgBackRest speaks S3 only over TLS. Real S3 requests, signatures and TLS; nothing mocked.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};

use crate::{run_ok, wait_for, Sandbox};

pub const BUCKET: &str = "pgbackrest";
pub const ACCESS_KEY: &str = "preseed-test-key";
pub const SECRET_KEY: &str = "preseed-test-secret-do-not-log";

pub struct S3 {
    /// The TLS port pgBackRest connects to.
    pub port: u16,
    /// The self-signed certificate, also the CA pgBackRest verifies it with.
    pub ca: Utf8PathBuf,
    pub data: Utf8PathBuf,
    children: Vec<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn s3s_fs() -> Utf8PathBuf {
    if let Ok(path) = std::env::var("S3S_FS") {
        return path.into();
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".to_owned());
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|dir| Utf8Path::new(dir).join("s3s-fs"))
        .chain(std::iter::once(Utf8PathBuf::from(format!("{home}/.cargo/bin/s3s-fs"))))
        .find(|p| p.is_file())
        .expect("s3s-fs is installed (cargo install --locked s3s-fs --version 0.14.1 --features binary)")
}

impl S3 {
    /// Starts the server with one empty bucket.
    pub fn start(sandbox: &Sandbox) -> S3 {
        let dir = sandbox.shared_dir("s3");
        let data = dir.join("data");
        std::fs::create_dir_all(data.join(BUCKET)).expect("create the bucket");
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        run_ok(Command::new("openssl").args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "30",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            key.as_str(),
            "-out",
            cert.as_str(),
        ]));
        crate::chown_postgres(&cert);
        let (plain, tls) = (free_port(), free_port());
        let log = |name: &str| std::fs::File::create(dir.join(name)).expect("create a log file");
        let server = Command::new(s3s_fs())
            .args(["--host", "127.0.0.1", "--port", &plain.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(data.as_str())
            .stdin(Stdio::null())
            .stdout(log("s3s-fs.log"))
            .stderr(log("s3s-fs.err"))
            .spawn()
            .expect("start s3s-fs");
        let conf = dir.join("stunnel.conf");
        std::fs::write(
            &conf,
            format!(
                "foreground = yes\npid =\n[s3]\naccept = 127.0.0.1:{tls}\nconnect = 127.0.0.1:{plain}\ncert = {cert}\nkey = {key}\n"
            ),
        )
        .expect("write stunnel.conf");
        let tunnel = Command::new("stunnel")
            .arg(conf.as_str())
            .stdin(Stdio::null())
            .stdout(log("stunnel.log"))
            .stderr(log("stunnel.err"))
            .spawn()
            .expect("start stunnel (apt-get install stunnel4)");
        let s3 = S3 {
            port: tls,
            ca: cert,
            data,
            children: vec![server, tunnel],
        };
        wait_for("the S3 server to listen", Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", plain)).is_ok()
                && TcpStream::connect(("127.0.0.1", tls)).is_ok()
        });
        s3
    }

    /// pgbackrest.conf lines for repository `n` on this server (credentials not included: they
    /// go through the environment, see [`S3::env`]).
    #[must_use]
    pub fn repo_options(&self, n: u32) -> String {
        format!(
            "repo{n}-type=s3\nrepo{n}-path=/repo\nrepo{n}-s3-bucket={BUCKET}\nrepo{n}-s3-endpoint=localhost\n\
             repo{n}-s3-region=us-east-1\nrepo{n}-s3-uri-style=path\nrepo{n}-storage-port={}\n\
             repo{n}-storage-ca-file={}\n",
            self.port, self.ca
        )
    }

    /// The credentials for repository `n`, as an EnvironmentFile would set them.
    #[must_use]
    pub fn env(n: u32) -> Vec<(String, String)> {
        vec![
            (format!("PGBACKREST_REPO{n}_S3_KEY"), ACCESS_KEY.to_owned()),
            (
                format!("PGBACKREST_REPO{n}_S3_KEY_SECRET"),
                SECRET_KEY.to_owned(),
            ),
        ]
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
