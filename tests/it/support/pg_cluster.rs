//! A PostgreSQL cluster of the test's own, made with `initdb` in a temporary directory and
//! served on a spare loopback port, so a test can restart or stop the server under a running
//! controller without touching the machine's PostgreSQL. The server binaries come from
//! Debian's PostgreSQL packages (`/usr/lib/postgresql/<version>/bin`); PostgreSQL refuses to
//! run as root, so as root the cluster belongs to the `postgres` user. Without the binaries a
//! test is skipped, unless CI=true, where it fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::net::free_port;

pub struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    pub port: u16,
}

/// The newest installed server's bin directory.
fn server_bin() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| Some(e.ok()?.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists() && bin.join("pg_ctl").exists())
        .collect();
    versions.sort();
    versions.pop()
}

/// Whether the tests run as root (whose `/proc/self` is root's).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Runs a server binary as the cluster's owner.
fn as_owner(program: &Path) -> Command {
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn run(mut cmd: Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Cluster {
    /// A new, running cluster with trust authentication for `postgres` on 127.0.0.1.
    pub fn start() -> Option<Cluster> {
        let Some(bin) = server_bin() else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "the PostgreSQL server binaries (initdb, pg_ctl) are required when CI=true"
            );
            eprintln!("skipped: no PostgreSQL server binaries under /usr/lib/postgresql");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let chown = |path: &Path| {
            let mut cmd = Command::new("chown");
            cmd.args(["-R", "postgres:postgres"]).arg(path);
            if is_root() {
                run(cmd, "chown the cluster directory");
            }
        };
        chown(dir.path());
        let mut initdb = as_owner(&bin.join("initdb"));
        initdb
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-D"])
            .arg(dir.path().join("data"));
        run(initdb, "initdb");
        let cluster = Cluster {
            bin,
            dir,
            port: free_port(),
        };
        cluster.pg_ctl(&["start", "-w"]);
        Some(cluster)
    }

    /// The URL of database `postgres` on this cluster.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server (every session ends, as in a crash or a restart) and starts it again.
    pub fn restart(&self) {
        self.pg_ctl(&["restart", "-m", "immediate", "-w"]);
    }

    fn pg_ctl(&self, args: &[&str]) {
        let socket_dir = self.dir.path();
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off",
            self.port,
            socket_dir.display()
        );
        let mut cmd = as_owner(&self.bin.join("pg_ctl"));
        cmd.arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-o", &options, "-l"])
            .arg(self.dir.path().join("server.log"))
            .args(args);
        run(cmd, &format!("pg_ctl {}", args.join(" ")));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut cmd = as_owner(&self.bin.join("pg_ctl"));
        cmd.arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["stop", "-m", "immediate"]);
        let _ = cmd.output();
    }
}
