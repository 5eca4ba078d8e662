//! What oxkit's test suites share: finding the real tools they drive, running commands, and a
//! real registry (Debian's docker-registry, distribution 2.8) on a free loopback port, with
//! optional TLS from a CA made here, client certificates and htpasswd basic auth; and
//! [`hostile`] layers for the code that reads untrusted tars.
//!
//! Test-only: crates take it as a dev-dependency. It panics with a clear message where a test
//! cannot go on (a tool missing, a server that does not start).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub mod hostile;
mod rng;

pub use rng::Rng;

/// The path of tool `name` (on `PATH`, in `/usr/sbin`, or where Debian 13's cosign package
/// unpacks); panics with the install hint when it is missing.
pub fn require_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([
            PathBuf::from("/usr/sbin"),
            PathBuf::from("/opt/cosign/usr/bin"),
        ])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed: run ./scripts/install-deps (as root)"))
}

/// The path of tool `name` (on `PATH`, in `/usr/sbin` or `/sbin`); panics naming the Debian
/// `package` to install when it is missing.
pub fn require_tool_from(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed: apt-get install -y {package}"))
}

/// Runs a command, panicking with its output if it fails. Returns stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A loopback port nothing listens on (at the time of asking).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// How a test registry is served.
#[derive(Default)]
pub struct Opts {
    /// (user, password) for htpasswd basic auth.
    pub basic_auth: Option<(String, String)>,
    /// HTTPS with a certificate from a CA made here (see [`Registry::ca_cert`]).
    pub tls: bool,
    /// Require a client certificate signed by that CA (mutual TLS); implies `tls`.
    pub client_certs: bool,
}

/// Debian's docker-registry on a free loopback port, its storage in a temporary directory;
/// killed on drop.
pub struct Registry {
    child: Child,
    pub dir: TempDir,
    pub port: u16,
    pub tls: bool,
}

impl Registry {
    /// Plain HTTP, no auth.
    pub fn start() -> Self {
        Self::start_with(Opts::default())
    }

    pub fn start_with(opts: Opts) -> Self {
        let bin = require_tool("docker-registry");
        let dir = tempfile::Builder::new()
            .prefix("oxkit-reg-")
            .tempdir()
            .expect("tempdir");
        let port = free_port();
        let tls = opts.tls || opts.client_certs;
        let mut cfg = format!(
            "version: 0.1\nlog: {{level: warn}}\nstorage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if tls {
            make_tls(dir.path(), opts.client_certs);
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
            std::fs::write(dir.path().join("htpasswd"), out).expect("write htpasswd");
            cfg.push_str(&format!(
                "auth: {{htpasswd: {{realm: oxkit-test, path: {}}}}}\n",
                dir.path().join("htpasswd").display()
            ));
        }
        let cfg_path = dir.path().join("config.yml");
        std::fs::write(&cfg_path, cfg).expect("write config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("create log");
        let child = Command::new(bin)
            .arg("serve")
            .arg(&cfg_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let reg = Self {
            child,
            dir,
            port,
            tls,
        };
        reg.wait_ready();
        reg
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!(
            "docker-registry did not start: {}",
            std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
        );
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// `http://HOST` or `https://HOST`.
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.host()
        )
    }

    /// The CA certificate that signed the server's certificate (TLS registries only).
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// A `certs.d` directory under `base` trusting this registry's CA.
    pub fn certs_d(&self, base: &Path) -> PathBuf {
        let d = base.join("certs.d");
        let host = d.join(self.host());
        std::fs::create_dir_all(&host).expect("create certs.d");
        std::fs::copy(self.ca_cert(), host.join("ca.crt")).expect("copy the CA");
        d
    }

    /// Like [`Registry::certs_d`], plus the client certificate (`client.cert`, `client.key`)
    /// of a registry started with [`Opts::client_certs`].
    pub fn certs_d_with_client(&self, base: &Path) -> PathBuf {
        let d = self.certs_d(base);
        for (from, to) in [("client.crt", "client.cert"), ("client.key", "client.key")] {
            std::fs::copy(self.dir.path().join(from), d.join(self.host()).join(to))
                .expect("copy the client certificate");
        }
        d
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA, and a leaf for 127.0.0.1/localhost signed by it (rustls refuses CA:TRUE leaves);
/// with `client`, a client certificate signed by it too.
fn make_tls(dir: &Path, client: bool) {
    let o = require_tool("openssl");
    let mut sh = format!(
        "set -e; cd {d}
{o} req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=oxkit-test-ca -keyout ca.key -out ca.crt 2>/dev/null
{o} req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost -keyout server.key -out server.csr 2>/dev/null
printf 'basicConstraints=critical,CA:FALSE\\nsubjectAltName=IP:127.0.0.1,DNS:localhost\\n' > ext.cnf
{o} x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile ext.cnf -out server.crt 2>/dev/null
",
        d = dir.display(),
        o = o.display()
    );
    if client {
        sh.push_str(&format!(
            "{o} req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=oxkit-client -keyout client.key -out client.csr 2>/dev/null
printf 'basicConstraints=critical,CA:FALSE\\nextendedKeyUsage=clientAuth\\n' > client.cnf
{o} x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile client.cnf -out client.crt 2>/dev/null
",
            o = o.display()
        ));
    }
    run_ok(Command::new("sh").arg("-c").arg(sh));
}
