//! TLS in front of a loopback test server: `socat` with a certificate for 127.0.0.1 signed by
//! a throwaway CA (as a Proxmox VE node's is by the cluster's pve-root-ca, or a Git server's by
//! a lab CA). Callers trust it through `ca` or pin `fingerprint`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use tempfile::TempDir;

use super::net::{free_port, wait_until_listening};

pub struct TlsProxy {
    child: Child,
    pub port: u16,
    /// The throwaway CA that signed the served certificate.
    pub ca: PathBuf,
    /// `openssl x509 -fingerprint -sha256` of the served certificate: `AA:BB:…`.
    pub fingerprint: String,
    _certs: TempDir,
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `socat` serving TLS on a free loopback port in front of `backend_port`; `None` (the caller
/// skips) where socat or openssl is missing, which under `CI=true` fails the test instead.
pub fn tls_proxy(backend_port: u16) -> Option<TlsProxy> {
    let have = |tool: &str| Command::new(tool).arg("-h").output().is_ok();
    if !have("socat") || !have("openssl") {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "socat and openssl are required under CI=true (apt-get install socat openssl)"
        );
        eprintln!("skipped: socat or openssl is not installed");
        return None;
    }
    let certs = TempDir::new().unwrap();
    let dir = certs.path();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut args = vec!["req", "-x509"];
    args.extend(ec);
    args.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=labctl test CA/OU=labctl test",
    ]);
    openssl(dir, &args);
    let mut args = vec!["req"];
    args.extend(ec);
    args.extend([
        "-keyout",
        "node.key",
        "-out",
        "node.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(dir, &args);
    std::fs::write(
        dir.join("node.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         extendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "node.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "node.pem",
            "-days",
            "2",
            "-extfile",
            "node.ext",
        ],
    );
    let printed = openssl(
        dir,
        &[
            "x509",
            "-in",
            "node.pem",
            "-noout",
            "-fingerprint",
            "-sha256",
        ],
    );
    let fingerprint = printed
        .trim()
        .split_once('=')
        .map(|(_, f)| f.to_string())
        .unwrap_or_else(|| panic!("unexpected openssl output {printed}"));

    let port = free_port();
    let child = Command::new("socat")
        .arg(format!(
            "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,verify=0,cert={},key={}",
            dir.join("node.pem").display(),
            dir.join("node.key").display()
        ))
        .arg(format!("TCP:127.0.0.1:{backend_port}"))
        // The readiness probe below connects without TLS, which socat reports.
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let proxy = TlsProxy {
        child,
        port,
        ca: dir.join("ca.pem"),
        fingerprint,
        _certs: certs,
    };
    assert!(
        wait_until_listening(port),
        "socat did not start listening on port {port}"
    );
    Some(proxy)
}
