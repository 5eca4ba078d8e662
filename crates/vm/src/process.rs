//! Runs one QEMU process: spawns it with the console on the inherited stdio, learns through
//! QMP how the guest stopped, enforces the timeout and forwards SIGINT/SIGTERM/SIGHUP, and
//! always leaves nothing running behind.
//!
//! When stdin is not a terminal (tests, CI, scripts) QEMU gets its own process group and every
//! kill goes to the whole group. When stdin is a terminal QEMU must stay in the terminal's
//! foreground group (a background group reading the terminal is stopped by SIGTTIN), so it is
//! signalled by pid; it starts no children there. QEMU is stopped with SIGTERM first, so it can
//! restore the terminal it put in raw mode, and SIGKILL only if it does not exit in time.

use std::fmt;
use std::io::IsTerminal;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};
use signal_hook::SigId;

use crate::args::{Accel, VmSpec, qemu_args};
use crate::error::VmError;
use crate::qmp::{self, StopReason};

/// How often the child and the flags are checked.
const POLL: Duration = Duration::from_millis(20);
/// How long QEMU may take to connect to the QMP socket after starting.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(20);
/// How long QEMU gets to exit after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(3);
/// How long to wait for the stop event after QEMU exited (it is sent before exiting).
const EVENT_GRACE: Duration = Duration::from_secs(2);

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The guest powered off. The only success.
    PoweredOff,
    /// The guest rebooted: `reboot`, or a kernel panic (the default `panic=-1` reboots at once,
    /// and `-no-reboot` turns the reboot into the end of the run).
    Rebooted,
    /// The guest reported a panic through a pvpanic device.
    GuestPanicked,
    /// QEMU stopped the VM for a host-side reason (`host-ui` is Ctrl-A x on the console).
    StoppedByHost { reason: String },
    /// The timeout expired and QEMU was killed.
    TimedOut { after: Duration },
    /// oxkit received this signal and stopped QEMU.
    Interrupted { signal: String },
    /// QEMU exited without the guest stopping (bad arguments, missing firmware, a crash...);
    /// its own messages are on stderr.
    QemuFailed { status: ExitStatus },
}

impl Outcome {
    pub fn is_success(&self) -> bool {
        matches!(self, Self::PoweredOff)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PoweredOff => write!(f, "the guest powered off"),
            Self::Rebooted => write!(
                f,
                "the guest rebooted instead of powering off (a kernel panic does this with panic=-1; see the console output above)"
            ),
            Self::GuestPanicked => write!(
                f,
                "the guest kernel panicked (see the console output above)"
            ),
            Self::StoppedByHost { reason } if reason == "host-ui" => {
                write!(f, "QEMU was quit from its console (Ctrl-A x)")
            }
            Self::StoppedByHost { reason } => write!(f, "QEMU stopped the VM ({reason})"),
            Self::TimedOut { after } => write!(
                f,
                "the guest did not power off within {}: QEMU was killed",
                human(*after)
            ),
            Self::Interrupted { signal } => write!(f, "interrupted by {signal}: QEMU was stopped"),
            Self::QemuFailed { status } => write!(
                f,
                "QEMU exited ({status}) before the guest powered off; its messages are above"
            ),
        }
    }
}

/// The result of [`run`].
#[derive(Debug, Clone)]
pub struct RunReport {
    pub outcome: Outcome,
    /// From spawning QEMU until it exited.
    pub elapsed: Duration,
}

/// Boots `spec` with `qemu` under `accel` and waits until QEMU exits, the timeout expires or
/// oxkit is signalled. The guest console goes straight to the inherited stdout.
pub fn run(
    qemu: &Path,
    spec: &VmSpec,
    accel: Accel,
    timeout: Option<Duration>,
) -> Result<RunReport, VmError> {
    let state = tempfile::Builder::new()
        .prefix("oxkit-vm-")
        .tempdir()
        .map_err(|source| VmError::StateDir { source })?;
    let socket = state.path().join("qmp.sock");
    let listener = UnixListener::bind(&socket)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| VmError::Qmp {
            socket: socket.clone(),
            detail: e.to_string(),
        })?;
    let args = qemu_args(spec, accel, &socket);
    let own_group = !std::io::stdin().is_terminal();
    // Declared before the child so it is dropped after it: the terminal is restored once QEMU
    // is gone, even if QEMU had to be SIGKILLed in raw mode.
    let _terminal = TerminalGuard::save(!own_group);
    let signals = Signals::register()?;

    let mut command = Command::new(qemu);
    command.args(&args);
    if own_group {
        command.process_group(0);
    }
    tracing::debug!(command = ?command, "starting QEMU");
    let start = Instant::now();
    let child = command.spawn().map_err(|source| VmError::Spawn {
        program: qemu.to_path_buf(),
        source,
    })?;
    let mut vm = Running {
        child,
        program: qemu.to_path_buf(),
        own_group,
        reaped: false,
    };
    let deadline = timeout.map(|t| start + t);
    let report = |outcome| RunReport {
        outcome,
        elapsed: start.elapsed(),
    };

    // QEMU connects while it sets up its devices, before the guest runs.
    let stream = loop {
        if let Some(status) = vm.try_wait()? {
            return Ok(report(Outcome::QemuFailed { status }));
        }
        if let Some(stop) = stop_requested(&signals, deadline, timeout) {
            vm.terminate()?;
            return Ok(report(stop));
        }
        if start.elapsed() > SOCKET_TIMEOUT {
            vm.terminate()?;
            return Err(VmError::Qmp {
                socket,
                detail: format!("QEMU did not connect within {} s", SOCKET_TIMEOUT.as_secs()),
            });
        }
        match listener.accept() {
            Ok((stream, _)) => match stream.set_nonblocking(false) {
                Ok(()) => break stream,
                Err(e) => {
                    vm.terminate()?;
                    return Err(VmError::Qmp {
                        socket,
                        detail: e.to_string(),
                    });
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(e) => {
                vm.terminate()?;
                return Err(VmError::Qmp {
                    socket,
                    detail: e.to_string(),
                });
            }
        }
    };
    let events = match qmp::listen(stream, &socket) {
        Ok(events) => events,
        Err(e) => {
            vm.terminate()?;
            return Err(e);
        }
    };

    let status = loop {
        if let Some(status) = vm.try_wait()? {
            break status;
        }
        if let Some(stop) = stop_requested(&signals, deadline, timeout) {
            vm.terminate()?;
            return Ok(report(stop));
        }
        std::thread::sleep(POLL);
    };
    let elapsed = start.elapsed();
    let reason = events.recv_timeout(EVENT_GRACE).ok();
    let outcome = match reason {
        _ if !status.success() => Outcome::QemuFailed { status },
        Some(StopReason::GuestShutdown) => Outcome::PoweredOff,
        Some(StopReason::GuestReset) => Outcome::Rebooted,
        Some(StopReason::GuestPanic) => Outcome::GuestPanicked,
        Some(StopReason::Other(reason)) => Outcome::StoppedByHost { reason },
        None => Outcome::QemuFailed { status },
    };
    Ok(RunReport { outcome, elapsed })
}

/// How a background QEMU run (the KVM probe) ended.
#[derive(Debug)]
pub(crate) enum QuietOutcome {
    Exited { status: ExitStatus, stderr: String },
    TimedOut,
}

/// Runs `program args` with no console (stdin and stdout on /dev/null, stderr kept for the
/// message), killing its process group after `timeout`.
pub(crate) fn run_quiet(
    program: &Path,
    args: &[std::ffi::OsString],
    timeout: Duration,
) -> Result<QuietOutcome, VmError> {
    let mut stderr_file = tempfile::tempfile().map_err(|source| VmError::StateDir { source })?;
    let stderr = stderr_file
        .try_clone()
        .map_err(|source| VmError::StateDir { source })?;
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .process_group(0);
    tracing::debug!(command = ?command, "starting QEMU probe");
    let child = command.spawn().map_err(|source| VmError::Spawn {
        program: program.to_path_buf(),
        source,
    })?;
    let mut vm = Running {
        child,
        program: program.to_path_buf(),
        own_group: true,
        reaped: false,
    };
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = vm.try_wait()? {
            let mut text = String::new();
            use std::io::{Read, Seek};
            let _ = stderr_file.rewind();
            let _ = stderr_file.read_to_string(&mut text);
            return Ok(QuietOutcome::Exited {
                status,
                stderr: text,
            });
        }
        if Instant::now() >= deadline {
            vm.terminate()?;
            return Ok(QuietOutcome::TimedOut);
        }
        std::thread::sleep(POLL);
    }
}

fn stop_requested(
    signals: &Signals,
    deadline: Option<Instant>,
    timeout: Option<Duration>,
) -> Option<Outcome> {
    if let Some(signal) = signals.received() {
        return Some(Outcome::Interrupted { signal });
    }
    match (deadline, timeout) {
        (Some(d), Some(after)) if Instant::now() >= d => Some(Outcome::TimedOut { after }),
        _ => None,
    }
}

/// The QEMU child; killed and reaped on drop if still running, so no error path leaks it.
struct Running {
    child: Child,
    program: PathBuf,
    own_group: bool,
    reaped: bool,
}

impl Running {
    fn try_wait(&mut self) -> Result<Option<ExitStatus>, VmError> {
        let status = self.child.try_wait().map_err(|source| VmError::Wait {
            program: self.program.clone(),
            source,
        })?;
        self.reaped |= status.is_some();
        Ok(status)
    }

    fn signal(&self, signal: Signal) {
        let Some(pid) = i32::try_from(self.child.id()).ok().and_then(Pid::from_raw) else {
            return;
        };
        // ESRCH (already gone) is the expected race here, not an error.
        let _ = if self.own_group {
            rustix::process::kill_process_group(pid, signal)
        } else {
            rustix::process::kill_process(pid, signal)
        };
    }

    /// SIGTERM, a grace period, then SIGKILL; reaps QEMU. The group gets a final SIGKILL in
    /// case anything else was left in it.
    fn terminate(&mut self) -> Result<(), VmError> {
        if !self.reaped {
            self.signal(Signal::TERM);
            let until = Instant::now() + TERM_GRACE;
            while self.try_wait()?.is_none() {
                if Instant::now() >= until {
                    self.signal(Signal::KILL);
                    self.child.wait().map_err(|source| VmError::Wait {
                        program: self.program.clone(),
                        source,
                    })?;
                    self.reaped = true;
                    break;
                }
                std::thread::sleep(POLL);
            }
        }
        if self.own_group {
            self.signal(Signal::KILL);
        }
        Ok(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.reaped {
            self.signal(Signal::KILL);
            let _ = self.child.wait();
        }
    }
}

/// The terminal settings of stdin, put back on drop (QEMU switches the terminal to raw mode
/// and only restores it when it exits normally).
struct TerminalGuard(Option<rustix::termios::Termios>);

impl TerminalGuard {
    fn save(is_terminal: bool) -> Self {
        Self(
            is_terminal
                .then(|| rustix::termios::tcgetattr(std::io::stdin()).ok())
                .flatten(),
        )
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = rustix::termios::tcsetattr(
                std::io::stdin(),
                rustix::termios::OptionalActions::Now,
                saved,
            );
        }
    }
}

/// SIGINT, SIGTERM and SIGHUP recorded instead of killing oxkit, so QEMU is stopped first.
/// Unregistered on drop.
struct Signals {
    last: Arc<AtomicUsize>,
    ids: Vec<SigId>,
}

impl Signals {
    fn register() -> Result<Self, VmError> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let last = Arc::new(AtomicUsize::new(0));
        let mut ids = Vec::new();
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            let value = usize::try_from(sig).unwrap_or(usize::MAX);
            let id = signal_hook::flag::register_usize(sig, Arc::clone(&last), value)
                .map_err(|source| VmError::Signals { source })?;
            ids.push(id);
        }
        Ok(Self { last, ids })
    }

    fn received(&self) -> Option<String> {
        match self.last.load(Ordering::SeqCst) {
            0 => None,
            n => Some(
                i32::try_from(n)
                    .ok()
                    .and_then(signal_hook::low_level::signal_name)
                    .map_or_else(|| format!("signal {n}"), str::to_string),
            ),
        }
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn dummy_spec() -> VmSpec {
        VmSpec {
            arch: crate::Arch::Amd64,
            memory_mib: 64,
            cpus: 1,
            boot: crate::Boot::Kernel {
                kernel: "k".into(),
                initrd: "i".into(),
                cmdline: String::new(),
            },
            disks: vec![],
            networking: crate::Networking::None,
        }
    }

    #[test]
    fn only_a_power_off_is_success() {
        assert!(Outcome::PoweredOff.is_success());
        for other in [
            Outcome::Rebooted,
            Outcome::GuestPanicked,
            Outcome::StoppedByHost {
                reason: "host-ui".into(),
            },
            Outcome::TimedOut {
                after: Duration::from_secs(1),
            },
            Outcome::Interrupted {
                signal: "SIGINT".into(),
            },
            Outcome::QemuFailed {
                status: ExitStatus::from_raw(256),
            },
        ] {
            assert!(!other.is_success(), "{other}");
        }
    }

    #[test]
    fn messages_say_what_happened() {
        let t = Outcome::TimedOut {
            after: Duration::from_millis(1500),
        }
        .to_string();
        assert!(t.contains("1.5 s") && t.contains("killed"), "{t}");
        let t = Outcome::TimedOut {
            after: Duration::from_secs(30),
        }
        .to_string();
        assert!(t.contains("within 30 s"), "{t}");
        let q = Outcome::QemuFailed {
            status: ExitStatus::from_raw(256),
        }
        .to_string();
        assert!(q.contains("exit status: 1"), "{q}");
    }

    /// A stand-in for QEMU that never connects to the socket: the timeout must still kill it, and
    /// its whole process group with it.
    #[test]
    fn a_hanging_process_is_killed_at_the_timeout() {
        let dir = tempfile::tempdir().expect("tmp");
        let fake = dir.path().join("fake-qemu");
        let pidfile = dir.path().join("grandchild.pid");
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh\nsleep 600 &\necho $! > {}\nexec sleep 600\n",
                pidfile.display()
            ),
        )
        .expect("script");
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let spec = dummy_spec();
        let start = Instant::now();
        let report = run(&fake, &spec, Accel::Tcg, Some(Duration::from_millis(700))).expect("run");
        assert_eq!(
            report.outcome,
            Outcome::TimedOut {
                after: Duration::from_millis(700)
            }
        );
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        if std::io::stdin().is_terminal() {
            return; // by-pid mode: only QEMU itself is signalled
        }
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .expect("pidfile")
            .trim()
            .parse()
            .expect("pid");
        // The background sleep was in QEMU's group: it must be gone (or a zombie being reaped).
        let until = Instant::now() + Duration::from_secs(3);
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .next();
            if stat.is_empty() || state == Some("Z") {
                break;
            }
            assert!(Instant::now() < until, "grandchild {pid} survived: {stat}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn a_program_that_exits_at_once_is_a_qemu_failure() {
        let spec = dummy_spec();
        let report = run(
            Path::new("/bin/false"),
            &spec,
            Accel::Tcg,
            Some(Duration::from_secs(10)),
        )
        .expect("run");
        assert!(
            matches!(report.outcome, Outcome::QemuFailed { status } if status.code() == Some(1)),
            "{:?}",
            report.outcome
        );
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let spec = dummy_spec();
        let err = run(Path::new("/nonexistent/qemu"), &spec, Accel::Tcg, None).expect_err("spawn");
        assert!(err.to_string().contains("/nonexistent/qemu"), "{err}");
    }
}
