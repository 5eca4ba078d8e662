//! The supervisor: runs `onboot` bundles one after the other to completion, then starts the
//! `services` and restarts each one that exits (with [`Backoff`]), until a stop is requested;
//! then runs the `onshutdown` bundles and stops the services (SIGTERM, a grace period,
//! SIGKILL). Container output is relayed line by line with the container's name.
//!
//! One thread, one poll(2) loop over: the signalfd (PID 1 and the command line), a control pipe
//! ([`Controller`], for tests and embedders), a pidfd per running container and an output pipe
//! per started container. Nothing here is PID-1-only: mounting the system, loading modules and
//! powering off are `boot.rs`'s, so tests run this exact code on a normal host.

use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::pipe::PipeFlags;
use rustix::process::{Pid, Signal, WaitOptions};

use crate::backoff::{self, Backoff, BackoffPolicy};
use crate::bundle::{self, Bundle, Kind, Loaded, Prepared};
use crate::child::signal_group;
use crate::launch::{self, StartError};
use crate::log::{LineSplitter, Log};
use crate::plan::{Host, Plan};

/// What a run was asked to end with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    Poweroff,
    Reboot,
    Halt,
}

impl Request {
    fn byte(self) -> u8 {
        match self {
            Request::Poweroff => b'p',
            Request::Reboot => b'r',
            Request::Halt => b'h',
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            b'p' => Some(Request::Poweroff),
            b'r' => Some(Request::Reboot),
            b'h' => Some(Request::Halt),
            _ => None,
        }
    }

    /// BusyBox init's signals, which its `halt`/`poweroff`/`reboot` applets send to PID 1:
    /// SIGUSR1 halt, SIGUSR2 poweroff, SIGTERM reboot; SIGINT is Ctrl-Alt-Del (reboot) and
    /// SIGPWR a power-off request (what LXC sends a container's init).
    pub fn from_signal(sig: i32) -> Option<Self> {
        match sig {
            libc::SIGUSR1 => Some(Request::Halt),
            libc::SIGUSR2 | libc::SIGPWR => Some(Request::Poweroff),
            libc::SIGTERM | libc::SIGINT => Some(Request::Reboot),
            _ => None,
        }
    }
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Request::Poweroff => "power off",
            Request::Reboot => "reboot",
            Request::Halt => "halt",
        })
    }
}

/// Asks a running supervisor to stop; clonable and usable from any thread.
#[derive(Clone, Debug)]
pub struct Controller {
    fd: Arc<OwnedFd>,
}

impl Controller {
    pub fn request(&self, r: Request) {
        let _ = rustix::io::write(self.fd.as_fd(), &[r.byte()]);
    }
}

#[derive(Clone, Debug)]
pub struct Options {
    /// The image root: bundles are under `root/containers/`; runtime.json host paths are
    /// taken relative to it.
    pub root: PathBuf,
    pub backoff: BackoffPolicy,
    /// Between SIGTERM and SIGKILL when stopping services (and an interrupted onboot bundle).
    pub stop_timeout: Duration,
    /// How long one onshutdown bundle may run before it is killed.
    pub onshutdown_timeout: Duration,
    /// Read SIGTERM/SIGINT/SIGUSR1/SIGUSR2/SIGPWR/SIGCHLD through a signalfd. Blocks them in the
    /// calling thread: only for a single-threaded process (PID 1, the command line).
    pub signals: bool,
    /// Reap every child on SIGCHLD (PID 1 inherits orphans), not only the containers.
    pub reap_orphans: bool,
}

impl Options {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            backoff: BackoffPolicy::default(),
            stop_timeout: Duration::from_secs(5),
            onshutdown_timeout: Duration::from_secs(30),
            signals: false,
            reap_orphans: false,
        }
    }
}

/// How a container ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exited with status {c}"),
            Exit::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// Makes a filesystem type mountable (loads its module); see `boot.rs`.
pub type EnsureFilesystem = Box<dyn FnMut(&str) + Send>;

struct Unit {
    bundle: Bundle,
    loaded: Option<(Loaded, Plan)>,
    prepared: Option<Prepared>,
    /// Failed in a way a restart cannot fix: never started again.
    given_up: bool,
    backoff: Backoff,
    next_start: Option<Instant>,
    restarts: u32,
    finished: Option<Exit>,
}

struct Running {
    unit: usize,
    pid: Pid,
    pidfd: Option<OwnedFd>,
    started: Instant,
}

struct Output {
    name: String,
    fd: OwnedFd,
    lines: LineSplitter,
}

pub struct Supervisor {
    options: Options,
    log: Log,
    host: Host,
    ensure_fs: Option<EnsureFilesystem>,
    control: OwnedFd,
    signalfd: Option<OwnedFd>,
    units: Vec<Unit>,
    running: Vec<Running>,
    outputs: Vec<Output>,
    request: Option<Request>,
    stopping: bool,
}

/// Without pidfds (kernels before 5.3) children are polled this often.
const POLL_FALLBACK: Duration = Duration::from_millis(200);

impl Supervisor {
    pub fn new(
        options: Options,
        log: Log,
        ensure_fs: Option<EnsureFilesystem>,
    ) -> std::io::Result<(Self, Controller)> {
        let (rx, tx) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        let signalfd = if options.signals {
            Some(signal_fd()?)
        } else {
            None
        };
        let sup = Self {
            options,
            log,
            host: Host::detect(),
            ensure_fs,
            control: rx,
            signalfd,
            units: Vec::new(),
            running: Vec::new(),
            outputs: Vec::new(),
            request: None,
            stopping: false,
        };
        Ok((sup, Controller { fd: Arc::new(tx) }))
    }

    /// Runs everything and returns what was requested. Never fails: problems are logged.
    pub fn run(mut self) -> Request {
        let root = self.options.root.clone();
        for kind in [Kind::Onboot, Kind::Service, Kind::Onshutdown] {
            for b in bundle::discover(&root, kind, &self.log) {
                self.units.push(Unit {
                    bundle: b,
                    loaded: None,
                    prepared: None,
                    given_up: false,
                    backoff: Backoff::new(self.options.backoff),
                    next_start: None,
                    restarts: 0,
                    finished: None,
                });
            }
        }
        let volumes = {
            let mut ensure = self.ensure_fs.take();
            let mut f = |t: &str| {
                if let Some(e) = ensure.as_mut() {
                    e(t)
                }
            };
            let v = bundle::mount_volumes(&root, &mut f, &self.log);
            self.ensure_fs = ensure;
            v
        };
        for idx in self.of_kind(Kind::Onboot) {
            if self.request.is_some() {
                break;
            }
            self.run_to_completion(idx, None);
        }
        if self.request.is_none() {
            self.supervise();
        }
        let request = self.request.unwrap_or(Request::Poweroff);
        self.log
            .info(format_args!("{request} requested; shutting down"));
        self.stopping = true;
        let timeout = self.options.onshutdown_timeout;
        for idx in self.of_kind(Kind::Onshutdown) {
            self.run_to_completion(idx, Some(timeout));
        }
        let services: Vec<usize> = self.running.iter().map(|r| r.unit).collect();
        self.stop(&services);
        self.drain_outputs(Duration::from_millis(500));
        // Services' rootfs overlays and namespace bindings go with the machine when booted,
        // but a supervisor run on a directory must leave nothing mounted.
        for idx in 0..self.units.len() {
            self.cleanup(idx);
        }
        bundle::cleanup(volumes);
        request
    }

    fn of_kind(&self, kind: Kind) -> Vec<usize> {
        (0..self.units.len())
            .filter(|i| self.units.get(*i).is_some_and(|u| u.bundle.kind == kind))
            .collect()
    }

    fn label(&self, idx: usize) -> String {
        self.units
            .get(idx)
            .map(|u| format!("{} {}", u.bundle.kind, u.bundle.name))
            .unwrap_or_default()
    }

    /// Loads, prepares and plans a bundle the first time it is started.
    fn ready(&mut self, idx: usize) -> Result<(), StartError> {
        let permanent = |message: String| StartError {
            message,
            permanent: true,
        };
        let label = self.label(idx);
        let Some(unit) = self.units.get_mut(idx) else {
            return Err(permanent("no such unit".into()));
        };
        if unit.loaded.is_some() {
            return Ok(());
        }
        let loaded = bundle::load(&unit.bundle).map_err(permanent)?;
        if unit.prepared.is_none() {
            let mut ensure = self.ensure_fs.take();
            let mut f = |t: &str| {
                if let Some(e) = ensure.as_mut() {
                    e(t)
                }
            };
            let prepared = bundle::prepare(
                &unit.bundle,
                &loaded,
                &self.options.root,
                &self.host,
                &mut f,
                &self.log,
            );
            self.ensure_fs = ensure;
            unit.prepared = Some(prepared.map_err(|message| StartError {
                message,
                permanent: false,
            })?);
        }
        let plan = bundle::plan(&unit.bundle, &loaded, &self.host).map_err(permanent)?;
        if !plan.notes.is_empty() {
            self.log.info(format_args!(
                "{label}: ignoring unsupported {}",
                plan.notes.join("; ")
            ));
        }
        if let Some(ensure) = self.ensure_fs.as_mut() {
            for m in &loaded.spec.mounts {
                if let Some(kind) = m
                    .kind
                    .as_deref()
                    .filter(|k| !matches!(*k, "" | "bind" | "cgroup"))
                {
                    ensure(kind);
                }
            }
        }
        unit.loaded = Some((loaded, plan));
        Ok(())
    }

    fn start(&mut self, idx: usize) -> Result<(), StartError> {
        self.ready(idx)?;
        let label = self.label(idx);
        let Some(unit) = self.units.get_mut(idx) else {
            return Err(StartError {
                message: "no such unit".into(),
                permanent: true,
            });
        };
        let Some((loaded, plan)) = unit.loaded.as_ref() else {
            return Err(StartError {
                message: "not loaded".into(),
                permanent: true,
            });
        };
        let rootfs = crate::plan::rootfs_of(&loaded.spec, &unit.bundle.dir);
        let started = launch::start(plan, &rootfs)?;
        let prepared = unit.prepared.get_or_insert_with(Prepared::default);
        let pid = started.pid.as_raw_nonzero().get();
        if let Err(e) = bundle::bind_namespaces(loaded, &self.options.root, pid, prepared) {
            self.log.info(format_args!("{label}: {e}"));
        }
        unit.finished = None;
        self.log.info(format_args!(
            "{label}: started (pid {})",
            started.pid.as_raw_nonzero()
        ));
        self.outputs.push(Output {
            name: unit.bundle.name.clone(),
            fd: started.output,
            lines: LineSplitter::default(),
        });
        self.running.push(Running {
            unit: idx,
            pid: started.pid,
            pidfd: started.pidfd,
            started: Instant::now(),
        });
        Ok(())
    }

    /// Starts a one-shot bundle and waits for it (at most `timeout`); logs how it ended.
    fn run_to_completion(&mut self, idx: usize, timeout: Option<Duration>) {
        let label = self.label(idx);
        if let Err(e) = self.start(idx) {
            self.log
                .info(format_args!("{label}: failed: {}", e.message));
            self.cleanup(idx);
            return;
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(exit) = self.units.get_mut(idx).and_then(|u| u.finished.take()) {
                match exit {
                    Exit::Code(0) => self.log.info(format_args!("{label}: done")),
                    other => self.log.info(format_args!("{label}: failed: {other}")),
                }
                break;
            }
            if !self.stopping && self.request.is_some() {
                self.log
                    .info(format_args!("{label}: stopping it: shutdown requested"));
                self.stop(&[idx]);
                continue;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                self.log.info(format_args!(
                    "{label}: still running after {}; stopping it",
                    backoff::show(timeout.unwrap_or_default())
                ));
                self.stop(&[idx]);
                continue;
            }
            self.pump(deadline);
        }
        self.cleanup(idx);
    }

    fn cleanup(&mut self, idx: usize) {
        if let Some(p) = self.units.get_mut(idx).and_then(|u| u.prepared.take()) {
            bundle::cleanup(p);
        }
        if let Some(u) = self.units.get_mut(idx) {
            u.loaded = None;
        }
    }

    /// Starts every service, then keeps them running until a stop is requested.
    fn supervise(&mut self) {
        for idx in self.of_kind(Kind::Service) {
            self.start_service(idx);
        }
        while self.request.is_none() {
            let next = self.units.iter().filter_map(|u| u.next_start).min();
            self.pump(next);
            let now = Instant::now();
            let due: Vec<usize> = (0..self.units.len())
                .filter(|i| {
                    self.units
                        .get(*i)
                        .and_then(|u| u.next_start)
                        .is_some_and(|t| t <= now)
                })
                .collect();
            for idx in due {
                if self.request.is_some() {
                    break;
                }
                if let Some(u) = self.units.get_mut(idx) {
                    u.next_start = None;
                }
                self.start_service(idx);
            }
        }
    }

    fn start_service(&mut self, idx: usize) {
        if let Err(e) = self.start(idx) {
            let label = self.label(idx);
            let Some(unit) = self.units.get_mut(idx) else {
                return;
            };
            if e.permanent {
                unit.given_up = true;
                self.log.info(format_args!(
                    "{label}: failed: {}; not restarting",
                    e.message
                ));
            } else {
                let delay = unit.backoff.after_run(Duration::ZERO);
                unit.next_start = Some(Instant::now() + delay);
                unit.restarts += 1;
                self.log.info(format_args!(
                    "{label}: failed: {}; retrying in {}",
                    e.message,
                    backoff::show(delay)
                ));
            }
        }
    }

    /// A container ended: one-shot bundles are marked finished, services are scheduled again.
    fn exited(&mut self, run: Running, exit: Exit) {
        let ran = run.started.elapsed();
        let label = self.label(run.unit);
        let stopping = self.stopping || self.request.is_some();
        let Some(unit) = self.units.get_mut(run.unit) else {
            return;
        };
        if unit.bundle.kind != Kind::Service {
            unit.finished = Some(exit);
            return;
        }
        if stopping || unit.given_up {
            self.log.info(format_args!("{label}: {exit}"));
            return;
        }
        let delay = unit.backoff.after_run(ran);
        unit.restarts += 1;
        unit.next_start = Some(Instant::now() + delay);
        self.log.info(format_args!(
            "{label}: {exit}; restarting in {} (restart {})",
            backoff::show(delay),
            unit.restarts
        ));
    }

    /// SIGTERM to the units' process groups, SIGKILL after the grace period, then waits until
    /// they are reaped.
    fn stop(&mut self, units: &[usize]) {
        let targets = |s: &Self| -> Vec<Pid> {
            s.running
                .iter()
                .filter(|r| units.contains(&r.unit))
                .map(|r| r.pid)
                .collect()
        };
        for pid in targets(self) {
            signal_group(pid, Signal::TERM);
        }
        let deadline = Instant::now() + self.options.stop_timeout;
        while !targets(self).is_empty() && Instant::now() < deadline {
            self.pump(Some(deadline));
        }
        let left = targets(self);
        if left.is_empty() {
            return;
        }
        for pid in &left {
            let label = self
                .running
                .iter()
                .find(|r| r.pid == *pid)
                .map(|r| self.label(r.unit))
                .unwrap_or_default();
            self.log.info(format_args!(
                "{label}: did not stop within {}; killing it",
                backoff::show(self.options.stop_timeout)
            ));
            signal_group(*pid, Signal::KILL);
        }
        // SIGKILL cannot be refused; a process stuck in the kernel can still take a while.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !targets(self).is_empty() && Instant::now() < deadline {
            self.pump(Some(deadline));
        }
    }

    /// Relays what is left in the output pipes (pipes held open by orphaned daemons are not
    /// waited for beyond `limit`).
    fn drain_outputs(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.outputs.is_empty() && Instant::now() < deadline {
            self.pump(Some(deadline));
        }
        for mut o in std::mem::take(&mut self.outputs) {
            let log = &self.log;
            o.lines.finish(|l| log.output(&o.name, l));
        }
    }

    /// One round of poll(2) and everything that became ready, at most until `deadline`.
    fn pump(&mut self, deadline: Option<Instant>) {
        #[derive(Clone, Copy)]
        enum Src {
            Signals,
            Control,
            Child(Pid),
            Out(usize),
        }
        let mut timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if self.running.iter().any(|r| r.pidfd.is_none()) {
            timeout = Some(timeout.map_or(POLL_FALLBACK, |t| t.min(POLL_FALLBACK)));
        }
        let ready: Vec<Src> = {
            let mut srcs = Vec::new();
            let mut fds = Vec::new();
            if let Some(s) = &self.signalfd {
                fds.push(PollFd::new(s, PollFlags::IN));
                srcs.push(Src::Signals);
            }
            fds.push(PollFd::new(&self.control, PollFlags::IN));
            srcs.push(Src::Control);
            for r in &self.running {
                if let Some(p) = &r.pidfd {
                    fds.push(PollFd::new(p, PollFlags::IN));
                    srcs.push(Src::Child(r.pid));
                }
            }
            for (i, o) in self.outputs.iter().enumerate() {
                fds.push(PollFd::new(&o.fd, PollFlags::IN));
                srcs.push(Src::Out(i));
            }
            let ts = timeout.map(|t| Timespec {
                tv_sec: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: i64::from(t.subsec_nanos()),
            });
            match rustix::event::poll(&mut fds, ts.as_ref()) {
                Ok(_) => fds
                    .iter()
                    .zip(srcs)
                    .filter(|(f, _)| !f.revents().is_empty())
                    .map(|(_, s)| s)
                    .collect(),
                Err(_) => Vec::new(),
            }
        };
        // Output first: a container's last lines are in its pipe before its exit is seen, and
        // they belong before the line saying it exited.
        let (outputs, events): (Vec<Src>, Vec<Src>) =
            ready.into_iter().partition(|s| matches!(s, Src::Out(_)));
        let mut closed = Vec::new();
        for src in outputs.into_iter().chain(events) {
            match src {
                Src::Signals => self.read_signals(),
                Src::Control => self.read_control(),
                Src::Child(pid) => self.reap(pid),
                Src::Out(i) => {
                    if !self.relay(i) {
                        closed.push(i);
                    }
                }
            }
        }
        for i in closed.into_iter().rev() {
            if i < self.outputs.len() {
                let mut o = self.outputs.remove(i);
                let log = &self.log;
                o.lines.finish(|l| log.output(&o.name, l));
            }
        }
        let without_pidfd: Vec<Pid> = self
            .running
            .iter()
            .filter(|r| r.pidfd.is_none())
            .map(|r| r.pid)
            .collect();
        for pid in without_pidfd {
            self.reap(pid);
        }
    }

    /// Reads an output pipe; false once it reached end of file.
    fn relay(&mut self, i: usize) -> bool {
        let Some(o) = self.outputs.get_mut(i) else {
            return false;
        };
        let mut buf = [0u8; 16 * 1024];
        // Bounded, so that one chatty container cannot starve the loop.
        for _ in 0..16 {
            match rustix::io::read(&o.fd, &mut buf) {
                Ok(0) => return false,
                Ok(n) => {
                    let log = &self.log;
                    o.lines
                        .feed(buf.get(..n).unwrap_or_default(), |l| log.output(&o.name, l));
                }
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => return true,
                Err(_) => return false,
            }
        }
        true
    }

    fn reap(&mut self, pid: Pid) {
        match rustix::process::waitpid(Some(pid), WaitOptions::NOHANG) {
            Ok(Some((_, status))) => self.record(pid, status),
            Ok(None) => {}
            // Already reaped (by the orphan reaper, which recorded it): forget it.
            Err(_) => {
                if let Some(pos) = self.running.iter().position(|r| r.pid == pid) {
                    let run = self.running.remove(pos);
                    self.exited(run, Exit::Signal(0));
                }
            }
        }
    }

    fn record(&mut self, pid: Pid, status: rustix::process::WaitStatus) {
        let exit = match (status.exit_status(), status.terminating_signal()) {
            (Some(code), _) => Exit::Code(code),
            (None, Some(sig)) => Exit::Signal(sig),
            // Stopped or continued: still there.
            (None, None) => return,
        };
        if let Some(pos) = self.running.iter().position(|r| r.pid == pid) {
            let run = self.running.remove(pos);
            self.exited(run, exit);
        }
    }

    fn read_control(&mut self) {
        let mut buf = [0u8; 16];
        while let Ok(n) = rustix::io::read(&self.control, &mut buf) {
            if n == 0 {
                break;
            }
            for b in buf.get(..n).unwrap_or_default() {
                if let Some(r) = Request::from_byte(*b) {
                    self.request.get_or_insert(r);
                }
            }
        }
    }

    fn read_signals(&mut self) {
        let Some(fd) = &self.signalfd else { return };
        let mut signals = Vec::new();
        loop {
            // SAFETY: signalfd_siginfo is plain old data; all zeroes is a valid value.
            let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
            let size = std::mem::size_of::<libc::signalfd_siginfo>();
            // SAFETY: `info` is a writable buffer of exactly `size` bytes.
            let buf = unsafe {
                std::slice::from_raw_parts_mut(
                    (&mut info as *mut libc::signalfd_siginfo).cast::<u8>(),
                    size,
                )
            };
            match rustix::io::read(fd, buf) {
                Ok(n) if n == size => signals.push(info.ssi_signo),
                _ => break,
            }
        }
        let mut reap_all = false;
        for sig in signals {
            let sig = i32::try_from(sig).unwrap_or(0);
            if sig == libc::SIGCHLD {
                reap_all = true;
            } else if let Some(r) = Request::from_signal(sig) {
                self.log.info(format_args!("signal {sig}: {r}"));
                self.request.get_or_insert(r);
            }
        }
        if reap_all && self.options.reap_orphans {
            while let Ok(Some((pid, status))) = rustix::process::waitpid(None, WaitOptions::NOHANG)
            {
                self.record(pid, status);
            }
        }
    }
}

/// Blocks the signals the supervisor handles and returns a signalfd for them.
fn signal_fd() -> std::io::Result<OwnedFd> {
    // SAFETY: sigset_t is plain old data; the calls only write the set, install it as this
    // thread's mask and create a descriptor from it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [
            libc::SIGCHLD,
            libc::SIGTERM,
            libc::SIGINT,
            libc::SIGUSR1,
            libc::SIGUSR2,
            libc::SIGPWR,
            libc::SIGHUP,
        ] {
            libc::sigaddset(&mut set, s);
        }
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}
