//! A minimal QMP (QEMU Machine Protocol) client: leave capabilities negotiation, then listen
//! for the `SHUTDOWN` event, whose `reason` tells a guest power-off (`guest-shutdown`) from a
//! guest reboot or panic (`guest-reset`, which `-no-reboot` turns into an exit) and from a stop
//! on the host side (`host-signal`, `host-ui`, ...). QEMU exits with 0 in all those cases, so
//! its exit status alone cannot say whether the guest powered off.
//! It only reads events; it never sends commands that change the VM.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use crate::error::VmError;

/// How long QEMU may take to greet and to answer `qmp_capabilities`.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why QEMU stopped the VM, from its `SHUTDOWN` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StopReason {
    /// The guest powered off (ACPI/PSCI power-off).
    GuestShutdown,
    /// The guest rebooted (`reboot`, or a kernel panic with `panic=-1`).
    GuestReset,
    /// The guest reported a panic (pvpanic).
    GuestPanic,
    /// Anything else, e.g. `host-signal` or `host-ui` (Ctrl-A x on the console).
    Other(String),
}

/// The stop reason if `line` is a QMP `SHUTDOWN` event; `None` for anything else.
pub(crate) fn parse_shutdown(line: &str) -> Option<StopReason> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    if value.get("event")?.as_str()? != "SHUTDOWN" {
        return None;
    }
    let reason = value
        .get("data")
        .and_then(|d| d.get("reason"))
        .and_then(|r| r.as_str())
        .unwrap_or("unknown");
    Some(match reason {
        "guest-shutdown" => StopReason::GuestShutdown,
        "guest-reset" => StopReason::GuestReset,
        "guest-panic" => StopReason::GuestPanic,
        other => StopReason::Other(other.to_string()),
    })
}

/// Completes the handshake on a connected socket, then forwards the stop reason from a
/// background thread that ends when QEMU closes the socket.
pub(crate) fn listen(stream: UnixStream, socket: &Path) -> Result<Receiver<StopReason>, VmError> {
    let err = |detail: String| VmError::Qmp {
        socket: socket.to_path_buf(),
        detail,
    };
    stream
        .set_read_timeout(Some(HANDSHAKE_TIMEOUT))
        .map_err(|e| err(e.to_string()))?;
    let mut writer = stream.try_clone().map_err(|e| err(e.to_string()))?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(|e| err(format!("no greeting: {e}")))?;
    if !line.contains("\"QMP\"") {
        return Err(err(format!("unexpected greeting {:?}", line.trim())));
    }
    writer
        .write_all(b"{\"execute\":\"qmp_capabilities\"}\n")
        .map_err(|e| err(e.to_string()))?;
    loop {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .map_err(|e| err(format!("no answer to qmp_capabilities: {e}")))?;
        if n == 0 {
            return Err(err("QEMU closed the socket during the handshake".into()));
        }
        let value: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| err(format!("bad reply {:?}: {e}", line.trim())))?;
        if value.get("return").is_some() {
            break;
        }
        if let Some(e) = value.get("error") {
            return Err(err(format!("qmp_capabilities refused: {e}")));
        }
    }
    reader
        .get_ref()
        .set_read_timeout(None)
        .map_err(|e| err(e.to_string()))?;
    let (tx, rx) = channel();
    std::thread::Builder::new()
        .name("qmp-events".into())
        .spawn(move || {
            for line in reader.lines() {
                let Ok(line) = line else { break };
                tracing::trace!(event = %line, "qmp");
                if let Some(reason) = parse_shutdown(&line) {
                    let _ = tx.send(reason);
                }
            }
        })
        .map_err(|e| err(format!("cannot start the event reader: {e}")))?;
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from QEMU 7.2 (Debian 12) booting a busybox initrd.
    const POWEROFF: &str = r#"{"timestamp": {"seconds": 1795720295, "microseconds": 754418}, "event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}}"#;
    const REBOOT: &str = r#"{"timestamp": {"seconds": 1795720302, "microseconds": 513587}, "event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-reset"}}"#;

    #[test]
    fn shutdown_reasons() {
        assert_eq!(parse_shutdown(POWEROFF), Some(StopReason::GuestShutdown));
        assert_eq!(parse_shutdown(REBOOT), Some(StopReason::GuestReset));
        assert_eq!(
            parse_shutdown(r#"{"event":"SHUTDOWN","data":{"guest":false,"reason":"host-signal"}}"#),
            Some(StopReason::Other("host-signal".into()))
        );
    }

    #[test]
    fn other_messages_are_ignored() {
        assert_eq!(parse_shutdown(r#"{"return": {}}"#), None);
        assert_eq!(
            parse_shutdown(r#"{"event":"RESET","data":{"guest":true}}"#),
            None
        );
        assert_eq!(parse_shutdown("not json"), None);
    }

    /// A fake QEMU on a socket pair: greeting, reply, one event.
    #[test]
    fn listen_negotiates_and_reports_the_event() {
        let (ours, theirs) = UnixStream::pair().expect("pair");
        let qemu = std::thread::spawn(move || {
            let mut w = theirs.try_clone().expect("clone");
            let mut r = BufReader::new(theirs);
            w.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": [\"oob\"]}}\r\n")
                .expect("greet");
            let mut cmd = String::new();
            r.read_line(&mut cmd).expect("cmd");
            assert!(cmd.contains("qmp_capabilities"), "{cmd}");
            w.write_all(b"{\"return\": {}}\r\n").expect("ret");
            w.write_all(format!("{REBOOT}\r\n").as_bytes())
                .expect("event");
        });
        let rx = listen(ours, Path::new("/fake.sock")).expect("handshake");
        let reason = rx.recv_timeout(Duration::from_secs(5)).expect("event");
        assert_eq!(reason, StopReason::GuestReset);
        qemu.join().expect("fake qemu");
    }

    #[test]
    fn listen_refuses_a_peer_that_is_not_qemu() {
        let (ours, theirs) = UnixStream::pair().expect("pair");
        let mut w = theirs.try_clone().expect("clone");
        w.write_all(b"SSH-2.0-nope\n").expect("write");
        let err = listen(ours, Path::new("/fake.sock")).expect_err("not qmp");
        assert!(err.to_string().contains("/fake.sock"), "{err}");
        drop(theirs);
    }
}
