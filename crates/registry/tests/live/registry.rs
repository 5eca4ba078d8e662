//! Debian's docker-registry (distribution 2.8) on a free loopback port for the client's own
//! tests, with optional htpasswd basic auth and TLS signed by a CA made here. Killed on drop.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub fn require_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path).chain([PathBuf::from("/usr/sbin")]) {
        let p = dir.join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("{name} is not installed: run ./scripts/install-deps (as root)");
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[derive(Default)]
pub struct Opts {
    pub basic_auth: Option<(String, String)>,
    pub tls: bool,
    /// Require a client certificate signed by the CA (mutual TLS); implies `tls`.
    pub client_certs: bool,
}

pub struct Registry {
    child: Child,
    pub dir: TempDir,
    pub port: u16,
}

impl Registry {
    pub fn start() -> Self {
        Self::start_with(Opts::default())
    }

    pub fn start_with(opts: Opts) -> Self {
        let bin = require_tool("docker-registry");
        let dir = tempfile::Builder::new()
            .prefix("oxkit-reg-")
            .tempdir()
            .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cfg = format!(
            "version: 0.1\nlog: {{level: warn}}\nstorage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if opts.tls || opts.client_certs {
            make_tls(dir.path());
            let clientcas = if opts.client_certs {
                format!(", clientcas: [{}]", dir.path().join("ca.crt").display())
            } else {
                String::new()
            };
            cfg.push_str(&format!(
                "  tls: {{certificate: {}, key: {}{clientcas}}}\n",
                dir.path().join("server.crt").display(),
                dir.path().join("server.key").display()
            ));
        }
        if let Some((user, pass)) = &opts.basic_auth {
            let out = run_ok(Command::new(require_tool("htpasswd")).args(["-Bbn", user, pass]));
            std::fs::write(dir.path().join("htpasswd"), out).unwrap();
            cfg.push_str(&format!(
                "auth: {{htpasswd: {{realm: oxkit-test, path: {}}}}}\n",
                dir.path().join("htpasswd").display()
            ));
        }
        let cfg_path = dir.path().join("config.yml");
        std::fs::write(&cfg_path, cfg).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(bin)
            .arg("serve")
            .arg(&cfg_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let reg = Self { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(25));
        }
        reg
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// Like [`Registry::certs_d`], plus a client certificate (`client.cert`/`client.key`).
    pub fn certs_d_with_client(&self, base: &Path) -> PathBuf {
        let d = self.certs_d(base);
        for (from, to) in [("client.crt", "client.cert"), ("client.key", "client.key")] {
            std::fs::copy(self.dir.path().join(from), d.join(self.host()).join(to)).unwrap();
        }
        d
    }

    /// A `certs.d` directory trusting this registry's CA.
    pub fn certs_d(&self, base: &Path) -> PathBuf {
        let d = base.join("certs.d");
        std::fs::create_dir_all(d.join(self.host())).unwrap();
        std::fs::copy(self.ca_cert(), d.join(self.host()).join("ca.crt")).unwrap();
        d
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn make_tls(dir: &Path) {
    let o = require_tool("openssl");
    let sh = format!(
        "set -e; cd {d}
{o} req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=oxkit-test-ca -keyout ca.key -out ca.crt 2>/dev/null
{o} req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost -keyout server.key -out server.csr 2>/dev/null
printf 'basicConstraints=critical,CA:FALSE\\nsubjectAltName=IP:127.0.0.1,DNS:localhost\\n' > ext.cnf
{o} x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile ext.cnf -out server.crt 2>/dev/null
{o} req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=oxkit-client -keyout client.key -out client.csr 2>/dev/null
printf 'basicConstraints=critical,CA:FALSE\nextendedKeyUsage=clientAuth\n' > client.cnf
{o} x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile client.cnf -out client.crt 2>/dev/null",
        d = dir.display(),
        o = o.display()
    );
    run_ok(Command::new("sh").arg("-c").arg(sh));
}
