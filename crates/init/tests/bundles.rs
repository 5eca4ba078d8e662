//! Runs real bundles (a busybox root filesystem) through the supervisor on this host, in
//! namespaces, without a VM and without the PID-1-only parts. Needs root (CI runs tests as
//! root); without it each test says so and passes vacuously.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oxkit_init::backoff::BackoffPolicy;
use oxkit_init::log::Log;
use oxkit_init::supervisor::{Controller, Options, Request, Supervisor};
use serde_json::{Value, json};

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
    };
}

/// Log lines with the time they were written.
#[derive(Clone, Default)]
struct Timed(Arc<Mutex<Vec<(Instant, String)>>>);

impl Write for Timed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let now = Instant::now();
        let mut v = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for line in String::from_utf8_lossy(buf).lines() {
            v.push((now, line.to_string()));
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Timed {
    fn lines(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(_, l)| l.clone())
            .collect()
    }
    fn times_of(&self, needle: &str) -> Vec<Instant> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, l)| l.contains(needle))
            .map(|(t, _)| *t)
            .collect()
    }
    fn text(&self) -> String {
        self.lines().join("\n")
    }
    /// Waits until a line contains `needle`.
    fn wait_for(&self, needle: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.lines().iter().any(|l| l.contains(needle)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

/// An image root with busybox at `rootfs-base` (its own copy per test).
struct Image {
    _dir: tempfile::TempDir,
    root: PathBuf,
    busybox: PathBuf,
}

fn busybox_tree(dest: &Path) {
    for d in [
        "bin", "sbin", "usr/bin", "usr/sbin", "tmp", "etc", "root", "proc", "sys", "dev",
    ] {
        std::fs::create_dir_all(dest.join(d)).expect("mkdir");
    }
    std::fs::copy("/bin/busybox", dest.join("bin/busybox"))
        .expect("busybox-static must be installed (scripts/install-deps)");
    let list = Command::new("/bin/busybox")
        .arg("--list-full")
        .output()
        .expect("busybox --list-full");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "bin/busybox" {
            let _ = std::os::unix::fs::symlink("/bin/busybox", dest.join(applet));
        }
    }
    assert!(dest.join("bin/sh").exists());
}

impl Image {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("image");
        let busybox = dir.path().join("rootfs-base");
        busybox_tree(&busybox);
        Self {
            _dir: dir,
            root,
            busybox,
        }
    }

    /// A bundle whose root is the shared busybox tree (read-only bundles never write to it).
    fn bundle(&self, kind: &str, name: &str, config: &Value) -> PathBuf {
        let dir = self.root.join("containers").join(kind).join(name);
        std::fs::create_dir_all(&dir).expect("bundle dir");
        let mut config = config.clone();
        if config.pointer("/root/path").is_none() {
            config["root"]["path"] = json!(self.busybox.to_string_lossy());
        }
        std::fs::write(
            dir.join("config.json"),
            serde_json::to_vec_pretty(&config).expect("json"),
        )
        .expect("config");
        dir
    }

    fn raw_bundle(&self, kind: &str, name: &str, config_text: &str) -> PathBuf {
        let dir = self.root.join("containers").join(kind).join(name);
        std::fs::create_dir_all(&dir).expect("bundle dir");
        std::fs::write(dir.join("config.json"), config_text).expect("config");
        dir
    }
}

/// A runc-shaped spec running `sh -c script` with the given namespaces.
fn sh(script: &str, namespaces: &[&str]) -> Value {
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "user": {"uid": 0, "gid": 0},
            "args": ["sh", "-c", script],
            "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/",
            "capabilities": {
                "bounding": ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SYS_ADMIN"],
                "effective": ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SYS_ADMIN"],
                "permitted": ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SYS_ADMIN"]
            }
        },
        "root": {"readonly": true},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]}
        ],
        "linux": {"namespaces": namespaces.iter().map(|n| json!({"type": n})).collect::<Vec<_>>()}
    })
}

const ISOLATED: &[&str] = &["pid", "mount", "ipc", "uts", "network"];

struct Running {
    controller: Controller,
    handle: std::thread::JoinHandle<Request>,
    log: Timed,
}

fn start(image: &Image, tune: impl FnOnce(&mut Options)) -> Running {
    let log = Timed::default();
    let mut options = Options::new(&image.root);
    options.backoff = BackoffPolicy {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(2),
        reset_after: Duration::from_secs(60),
    };
    options.stop_timeout = Duration::from_millis(500);
    options.onshutdown_timeout = Duration::from_secs(5);
    tune(&mut options);
    let (sup, controller) =
        Supervisor::new(options, Log::new(Box::new(log.clone()), true), None).expect("supervisor");
    let handle = std::thread::spawn(move || sup.run());
    Running {
        controller,
        handle,
        log,
    }
}

impl Running {
    fn stop(self, request: Request) -> (Request, Timed) {
        self.controller.request(request);
        let got = self.handle.join().expect("supervisor thread");
        (got, self.log)
    }
}

fn line_index(lines: &[String], needle: &str) -> usize {
    lines
        .iter()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{}", lines.join("\n")))
}

#[test]
fn onboot_runs_in_order_and_survives_bad_bundles() {
    require_root!();
    let image = Image::new();
    image.bundle(
        "onboot",
        "001-hello",
        &sh("echo hello from onboot; echo second line", ISOLATED),
    );
    image.bundle(
        "onboot",
        "002-fails",
        &sh("echo about to fail; exit 3", ISOLATED),
    );
    image.raw_bundle(
        "onboot",
        "003-malformed",
        "{\n  \"process\": {\n    \"args\": [\"sh\",]\n  }\n}\n",
    );
    let mut missing = sh("", ISOLATED);
    missing["process"]["args"] = json!(["/bin/no-such-program", "x"]);
    image.bundle("onboot", "004-missing", &missing);
    let mut not_in_path = sh("", ISOLATED);
    not_in_path["process"]["args"] = json!(["no-such-tool"]);
    image.bundle("onboot", "005-notinpath", &not_in_path);
    std::fs::create_dir_all(image.root.join("containers/onboot/006-noconfig")).expect("mkdir");
    image.bundle("onboot", "007-last", &sh("echo last one ran", ISOLATED));

    let run = start(&image, |_| {});
    assert!(
        run.log
            .wait_for("onboot 007-last: done", Duration::from_secs(20)),
        "{}",
        run.log.text()
    );
    // No services: the init keeps running until asked to stop.
    std::thread::sleep(Duration::from_millis(300));
    assert!(!run.handle.is_finished());
    let (request, log) = run.stop(Request::Poweroff);
    assert_eq!(request, Request::Poweroff);
    let lines = log.lines();
    let text = log.text();

    assert!(
        lines.contains(&"001-hello: hello from onboot".to_string()),
        "{text}"
    );
    assert!(
        lines.contains(&"001-hello: second line".to_string()),
        "{text}"
    );
    assert!(
        lines.contains(&"002-fails: about to fail".to_string()),
        "{text}"
    );
    assert!(
        lines.contains(&"oxkit-init: onboot 002-fails: failed: exited with status 3".to_string()),
        "{text}"
    );
    // One clear line each for the broken bundles, naming the container and the cause.
    let about = |name: &str| {
        lines
            .iter()
            .filter(|l| l.contains(name))
            .cloned()
            .collect::<Vec<_>>()
    };
    let malformed = about("003-malformed");
    assert_eq!(malformed.len(), 1, "{malformed:?}");
    assert!(
        malformed[0].starts_with("oxkit-init: onboot 003-malformed: failed: "),
        "{malformed:?}"
    );
    assert!(
        malformed[0].contains("003-malformed/config.json:3:"),
        "{malformed:?}"
    );
    let missing = about("004-missing");
    // Only the failure: the start itself failed, so there is no "started" line.
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert!(missing.iter().any(|l| l == "oxkit-init: onboot 004-missing: failed: cannot start: executable \"/bin/no-such-program\" not found"), "{missing:?}");
    assert!(
        about("005-notinpath").iter().any(|l| l.contains(
            "executable \"no-such-tool\" not found in PATH /usr/sbin:/usr/bin:/sbin:/bin"
        )),
        "{text}"
    );
    let noconfig = about("006-noconfig");
    assert_eq!(noconfig.len(), 1, "{noconfig:?}");
    assert!(
        noconfig[0].contains("cannot read") && noconfig[0].contains("config.json"),
        "{noconfig:?}"
    );

    // In order, each to completion before the next.
    let order = [
        "onboot 001-hello: done",
        "onboot 002-fails: started",
        "onboot 002-fails: failed",
        "onboot 003-malformed: failed",
        "onboot 004-missing: failed",
        "onboot 007-last: started",
        "007-last: last one ran",
        "onboot 007-last: done",
        "power off requested; shutting down",
    ];
    let idx: Vec<usize> = order.iter().map(|n| line_index(&lines, n)).collect();
    assert!(
        idx.windows(2).all(|w| w[0] < w[1]),
        "{order:?} out of order:\n{text}"
    );
}

#[test]
fn identity_environment_and_readonly_root_are_applied() {
    require_root!();
    let image = Image::new();
    let mut spec = sh(
        "echo host=$(hostname) foo=$FOO pwd=$(pwd) uid=$(id -u) gid=$(id -g) groups=$(id -G) pid=$$; \
         grep -E 'Cap(Eff|Bnd)' /proc/self/status; grep NoNewPrivs /proc/self/status; \
         if touch /should-fail 2>/dev/null; then echo root-writable; else echo root-readonly; fi; \
         touch /tmp/ok && echo tmp-writable; ls -l /dev/null | cut -c1-10; umask; pwd",
        ISOLATED,
    );
    spec["hostname"] = json!("boxy");
    spec["process"]["env"] = json!(["PATH=/bin", "FOO=bar baz"]);
    spec["process"]["cwd"] = json!("/work/dir");
    spec["process"]["user"] = json!({"uid": 1000, "gid": 1001, "additionalGids": [2000, 2001]});
    spec["process"]["noNewPrivileges"] = json!(true);
    // A non-root process keeps capabilities across execve only through the ambient set.
    spec["process"]["capabilities"] = json!({"bounding": ["CAP_KILL", "CAP_NET_RAW"], "effective": ["CAP_KILL"],
        "permitted": ["CAP_KILL"], "inheritable": ["CAP_KILL"], "ambient": ["CAP_KILL"]});
    image.bundle("onboot", "001-who", &spec);
    let run = start(&image, |_| {});
    assert!(
        run.log
            .wait_for("onboot 001-who: done", Duration::from_secs(20)),
        "{}",
        run.log.text()
    );
    let (_, log) = run.stop(Request::Poweroff);
    let lines = log.lines();
    let text = log.text();
    // The cwd did not exist: it is created before the root becomes read-only, as runc does.
    let who = lines
        .iter()
        .find(|l| l.starts_with("001-who: host="))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(who.contains("host=boxy foo=bar baz"), "{who}");
    assert!(
        who.contains("uid=1000 gid=1001 groups=1001 2000 2001")
            || who.contains("uid=1000 gid=1001 groups=2000 2001"),
        "{who}"
    );
    assert!(who.ends_with("pid=1"), "new pid namespace: {who}");
    assert!(
        lines.contains(&"001-who: CapEff:\t0000000000000020".to_string()),
        "{text}"
    );
    assert!(
        lines.contains(&"001-who: CapBnd:\t0000000000002020".to_string()),
        "{text}"
    );
    assert!(
        lines.contains(&"001-who: NoNewPrivs:\t1".to_string()),
        "{text}"
    );
    assert!(
        lines.contains(&"001-who: root-readonly".to_string()),
        "{text}"
    );
    assert!(
        lines.contains(&"001-who: tmp-writable".to_string()),
        "{text}"
    );
    assert!(lines.contains(&"001-who: crw-rw-rw-".to_string()), "{text}");
    assert!(lines.contains(&"001-who: 0022".to_string()), "{text}");
    assert!(lines.contains(&"001-who: /work/dir".to_string()), "{text}");
    assert!(who.contains("pwd=/work/dir"), "{who}");
}

#[test]
fn working_directory_is_created_on_a_writable_root() {
    require_root!();
    let image = Image::new();
    let mut spec = sh(
        "pwd; touch /written && echo root-writable",
        &["pid", "mount"],
    );
    spec["root"] = json!({"path": image.busybox.to_string_lossy(), "readonly": false});
    spec["process"]["cwd"] = json!("/work/dir");
    image.bundle("onboot", "001-cwd", &spec);
    let run = start(&image, |_| {});
    assert!(
        run.log
            .wait_for("onboot 001-cwd: done", Duration::from_secs(20)),
        "{}",
        run.log.text()
    );
    let (_, log) = run.stop(Request::Poweroff);
    let lines = log.lines();
    assert!(
        lines.contains(&"001-cwd: /work/dir".to_string()),
        "{}",
        log.text()
    );
    assert!(
        lines.contains(&"001-cwd: root-writable".to_string()),
        "{}",
        log.text()
    );
    assert!(image.busybox.join("written").exists());
}

#[test]
fn host_pid_namespace_makes_the_container_our_child() {
    require_root!();
    let image = Image::new();
    image.bundle(
        "onboot",
        "001-hostpid",
        &sh("echo pid=$$; grep PPid /proc/self/status", &["mount"]),
    );
    image.bundle(
        "onboot",
        "002-newpid",
        &sh(
            "echo pid=$$; grep PPid /proc/self/status",
            &["mount", "pid"],
        ),
    );
    let run = start(&image, |_| {});
    assert!(
        run.log
            .wait_for("onboot 002-newpid: done", Duration::from_secs(20)),
        "{}",
        run.log.text()
    );
    let (_, log) = run.stop(Request::Poweroff);
    let lines = log.lines();
    let text = log.text();
    let started = lines
        .iter()
        .find(|l| l.contains("onboot 001-hostpid: started (pid "))
        .unwrap_or_else(|| panic!("{text}"));
    let pid: String = started
        .rsplit("pid ")
        .next()
        .unwrap_or_default()
        .trim_end_matches(')')
        .to_string();
    assert!(
        lines.contains(&format!("001-hostpid: pid={pid}")),
        "host pid namespace keeps the real pid {pid}:\n{text}"
    );
    assert!(
        lines.contains(&format!("001-hostpid: PPid:\t{}", std::process::id())),
        "{text}"
    );
    assert!(lines.contains(&"002-newpid: pid=1".to_string()), "{text}");
    assert!(
        lines.contains(&"002-newpid: PPid:\t0".to_string()),
        "{text}"
    );
}

#[test]
fn crashing_services_restart_with_growing_backoff() {
    require_root!();
    let image = Image::new();
    image.bundle(
        "services",
        "crasher",
        &sh("echo crashing now; exit 1", ISOLATED),
    );
    image.bundle(
        "services",
        "steady",
        &sh("echo steady up; exec sleep 1000", ISOLATED),
    );
    let run = start(&image, |o| {
        o.backoff = BackoffPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(3200),
            reset_after: Duration::from_secs(60),
        };
    });
    // Starts at 0, then after 100, 200, 400, 800 ms: the fifth start comes ~1.5 s in.
    assert!(
        run.log.wait_for("(restart 5)", Duration::from_secs(20)),
        "{}",
        run.log.text()
    );
    let starts = run.log.times_of("service crasher: started");
    let (_, log) = run.stop(Request::Reboot);
    let text = log.text();
    assert!(starts.len() >= 5, "{text}");
    let gaps: Vec<Duration> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    // Each wait is at least the back-off delay (the start-to-start gap adds the run time and
    // scheduling noise), and the spacing grows.
    for (i, gap) in gaps.iter().take(4).enumerate() {
        let floor = Duration::from_millis(100 << i);
        assert!(*gap >= floor, "gap {i} {gap:?} < {floor:?}: {gaps:?}");
    }
    assert!(gaps[2] > gaps[0] * 2 && gaps[3] > gaps[1] * 2, "{gaps:?}");
    let lines = log.lines();
    assert!(
        lines.contains(
            &"oxkit-init: service crasher: exited with status 1; restarting in 100ms (restart 1)"
                .to_string()
        ),
        "{text}"
    );
    assert!(
        lines.contains(
            &"oxkit-init: service crasher: exited with status 1; restarting in 200ms (restart 2)"
                .to_string()
        ),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .filter(|l| *l == "crasher: crashing now")
            .count()
            >= 5,
        "{text}"
    );
    // The steady one started once and was stopped at shutdown: sleep as PID 1 of its namespace
    // ignores SIGTERM, so it is killed after the grace period.
    assert_eq!(log.times_of("service steady: started").len(), 1, "{text}");
    assert!(lines.contains(&"steady: steady up".to_string()), "{text}");
    assert!(
        lines.contains(
            &"oxkit-init: service steady: did not stop within 500ms; killing it".to_string()
        ),
        "{text}"
    );
    assert!(
        lines.contains(&"oxkit-init: service steady: killed by signal 9".to_string()),
        "{text}"
    );
}

#[test]
fn services_that_cannot_start_are_not_retried_forever() {
    require_root!();
    let image = Image::new();
    let mut missing = sh("", ISOLATED);
    missing["process"]["args"] = json!(["/nope"]);
    image.bundle("services", "missing", &missing);
    image.raw_bundle("services", "broken", "not json");
    let run = start(&image, |_| {});
    assert!(
        run.log
            .wait_for("service missing: failed", Duration::from_secs(10)),
        "{}",
        run.log.text()
    );
    std::thread::sleep(Duration::from_millis(500));
    let (_, log) = run.stop(Request::Poweroff);
    let lines = log.lines();
    let text = log.text();
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("service missing"))
            .count(),
        1,
        "{text}"
    );
    assert!(lines.contains(&"oxkit-init: service missing: failed: cannot start: executable \"/nope\" not found; not restarting".to_string()), "{text}");
    let broken: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("service broken"))
        .collect();
    assert_eq!(broken.len(), 1, "{text}");
    assert!(
        broken[0].contains("config.json:1:2: expected ident")
            && broken[0].ends_with("; not restarting"),
        "{text}"
    );
}

#[test]
fn onshutdown_runs_when_stopping() {
    require_root!();
    let image = Image::new();
    image.bundle(
        "services",
        "steady",
        &sh(
            "trap 'echo got TERM; exit 0' TERM; echo up; while true; do sleep 0.05; done",
            &["mount"],
        ),
    );
    image.bundle(
        "onshutdown",
        "001-bye",
        &sh("echo saying goodbye", ISOLATED),
    );
    image.bundle("onshutdown", "002-slow", &sh("exec sleep 1000", &["mount"]));
    let run = start(&image, |o| {
        o.onshutdown_timeout = Duration::from_millis(700)
    });
    assert!(
        run.log.wait_for("steady: up", Duration::from_secs(20)),
        "{}",
        run.log.text()
    );
    assert!(!run.log.text().contains("001-bye"));
    let t0 = Instant::now();
    let (request, log) = run.stop(Request::Halt);
    assert_eq!(request, Request::Halt);
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "shutdown took {:?}",
        t0.elapsed()
    );
    let lines = log.lines();
    let text = log.text();
    let order = [
        "halt requested; shutting down",
        "001-bye: saying goodbye",
        "onshutdown 001-bye: done",
        "onshutdown 002-slow: still running after 700ms; stopping it",
        "onshutdown 002-slow: failed: killed by signal 15",
        "steady: got TERM",
        "service steady: exited with status 0",
    ];
    let idx: Vec<usize> = order.iter().map(|n| line_index(&lines, n)).collect();
    assert!(
        idx.windows(2).all(|w| w[0] < w[1]),
        "{order:?} out of order:\n{text}"
    );
}

#[test]
fn writable_containers_get_an_overlay_that_is_undone() {
    require_root!();
    let image = Image::new();
    let dir = image.root.join("containers/onboot/001-rw");
    busybox_tree(&dir.join("lower"));
    std::fs::create_dir_all(dir.join("tmp")).expect("tmp");
    std::fs::create_dir_all(dir.join("rootfs")).expect("rootfs");
    let mut spec = sh(
        "echo data > /etc/written && cat /etc/written && rm /bin/busybox.missing 2>/dev/null; ls /etc",
        ISOLATED,
    );
    spec["root"] = json!({"path": "rootfs", "readonly": false});
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec(&spec).expect("json"),
    )
    .expect("config");
    let run = start(&image, |_| {});
    assert!(
        run.log
            .wait_for("onboot 001-rw: done", Duration::from_secs(20)),
        "{}",
        run.log.text()
    );
    let (_, log) = run.stop(Request::Poweroff);
    assert!(
        log.lines().contains(&"001-rw: data".to_string()),
        "{}",
        log.text()
    );
    // The write went to the tmpfs upper layer, which is gone with the mounts.
    assert!(!dir.join("lower/etc/written").exists());
    assert!(!dir.join("rootfs/etc").exists(), "rootfs is still mounted");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mounts.contains(&dir.to_string_lossy().into_owned()),
        "{mounts}"
    );
}

#[test]
fn linuxkit_runtime_json_prepares_the_rootfs() {
    require_root!();
    let image = Image::new();
    let dir = image.root.join("containers/services/lk");
    busybox_tree(&dir.join("lower"));
    std::fs::create_dir_all(dir.join("tmp")).expect("tmp");
    std::fs::create_dir_all(dir.join("rootfs")).expect("rootfs");
    let mut spec = sh(
        "echo written > /root/note; cat /root/note; ls -d /var/lib/lk && echo mkdir-done; exec sleep 1000",
        &["mount", "pid"],
    );
    spec["root"] = json!({"path": "rootfs", "readonly": false});
    spec["mounts"].as_array_mut().expect("mounts").push(json!({"destination": "/var/lib/lk", "type": "bind", "source": "/var/lib/lk", "options": ["rbind", "rw"]}));
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec(&spec).expect("json"),
    )
    .expect("config");
    // What LinuxKit writes, with absolute host paths (taken relative to the image root here).
    let runtime = json!({
        "mounts": [
            {"destination": "/containers/services/lk/tmp", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/containers/services/lk/tmp", "options": ["remount", "private"]},
            {"destination": "/containers/services/lk/rootfs", "type": "overlay", "source": "overlay",
             "options": ["lowerdir=/containers/services/lk/lower", "upperdir=/containers/services/lk/tmp/upper", "workdir=/containers/services/lk/tmp/work"]}
        ],
        "mkdir": ["/var/lib/lk"],
        "bindNS": {"mnt": "/run/netns/lk-mnt"}
    });
    std::fs::write(
        dir.join("runtime.json"),
        serde_json::to_vec(&runtime).expect("json"),
    )
    .expect("runtime");
    // The bind source is a host path: it exists only after runtime.json's mkdir ran, relative to
    // the image root; point the spec at that.
    let mut spec2 = spec.clone();
    spec2["mounts"][3]["source"] = json!(image.root.join("var/lib/lk").to_string_lossy());
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec(&spec2).expect("json"),
    )
    .expect("config");

    let run = start(&image, |_| {});
    let ok = run.log.wait_for("lk: mkdir-done", Duration::from_secs(20));
    let ns_bound = image.root.join("run/netns/lk-mnt");
    let bound = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .contains(&ns_bound.to_string_lossy().into_owned());
    let upper_has_note = dir.join("tmp/upper/root/note").exists();
    let (_, log) = run.stop(Request::Poweroff);
    assert!(ok, "{}", log.text());
    assert!(
        log.lines().contains(&"lk: written".to_string()),
        "{}",
        log.text()
    );
    assert!(
        upper_has_note,
        "the write should land in tmp/upper: {}",
        log.text()
    );
    assert!(
        bound,
        "bindNS: mount namespace bound at {}",
        ns_bound.display()
    );
    assert!(!dir.join("lower/root/note").exists());
    // Nothing stays mounted after the run.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mounts.contains(&image.root.to_string_lossy().into_owned()),
        "{mounts}"
    );
}

#[test]
fn volumes_are_overlaid_and_shared_between_containers() {
    require_root!();
    let image = Image::new();
    let vols = image.root.join("containers/volumes");
    for d in ["rw/lower", "rw/tmp", "rw/merged", "ro/lower", "ro/merged"] {
        std::fs::create_dir_all(vols.join(d)).expect("mkdir");
    }
    std::fs::write(vols.join("rw/lower/seed"), "from the image\n").expect("seed");
    std::fs::write(vols.join("ro/lower/fixed"), "fixed\n").expect("fixed");
    let with_volumes = |script: &str| {
        let mut spec = sh(script, ISOLATED);
        let mounts = spec["mounts"].as_array_mut().expect("mounts");
        for (v, opts) in [
            ("rw", json!(["rbind", "rw"])),
            ("ro", json!(["rbind", "ro"])),
        ] {
            mounts.push(json!({"destination": format!("/{v}"), "type": "bind",
                "source": vols.join(v).join("merged").to_string_lossy(), "options": opts}));
        }
        spec
    };
    image.bundle("onboot", "001-write", &with_volumes("cat /rw/seed; echo shared > /rw/new; touch /ro/x 2>/dev/null || echo ro-refused; cat /ro/fixed"));
    image.bundle("onboot", "002-read", &with_volumes("cat /rw/new"));
    let run = start(&image, |_| {});
    assert!(
        run.log
            .wait_for("onboot 002-read: done", Duration::from_secs(20)),
        "{}",
        run.log.text()
    );
    let upper = vols.join("rw/tmp/upper/new").exists();
    let (_, log) = run.stop(Request::Poweroff);
    let lines = log.lines();
    let text = log.text();
    for want in [
        "001-write: from the image",
        "001-write: ro-refused",
        "001-write: fixed",
        "002-read: shared",
    ] {
        assert!(lines.contains(&want.to_string()), "{want}:\n{text}");
    }
    assert!(upper, "writes land in the volume's tmpfs upper layer");
    assert!(!vols.join("rw/lower/new").exists());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mounts.contains(&vols.to_string_lossy().into_owned()),
        "{mounts}"
    );
}

#[test]
fn the_binary_supervises_a_directory_until_sigterm() {
    require_root!();
    let image = Image::new();
    image.bundle(
        "services",
        "hello",
        &sh(
            "echo hello from the binary; exec sleep 1000",
            &["mount", "pid"],
        ),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_oxkit-init"))
        .arg("--root")
        .arg(&image.root)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn oxkit-init");
    let stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    std::thread::sleep(Duration::from_millis(1500));
    let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).expect("pid")).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("kill");
    let status = child.wait().expect("wait");
    let lines = reader.join().expect("reader");
    let text = lines.join("\n");
    assert!(status.success(), "{status:?}\n{text}");
    assert!(
        lines.contains(&"hello: hello from the binary".to_string()),
        "{text}"
    );
    assert!(
        lines.contains(&"oxkit-init: signal 15: reboot".to_string()),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("oxkit-init: service hello: did not stop within 5s"))
            || lines
                .iter()
                .any(|l| l.starts_with("oxkit-init: service hello: killed by signal")),
        "{text}"
    );
}
