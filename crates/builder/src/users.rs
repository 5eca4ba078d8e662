//! `--chown` owners as BuildKit resolves them: `uid[:gid]` or names looked up in the stage's own
//! `/etc/passwd` and `/etc/group`. A user without a group uses the same number as its uid
//! (Docker's documented rule). Reads two files of the stage; decides nothing else.

use std::path::Path;

use crate::error::StepError;
use crate::fsutil;

/// `uid:gid` for a `--chown` value, with names resolved in the root filesystem `root`
/// (`None` when the stage has no root filesystem yet, i.e. `FROM scratch` with nothing in it).
pub(crate) fn resolve_chown(spec: &str, root: Option<&Path>) -> Result<(u32, u32), StepError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() {
        return Err(StepError::new(format!(
            "invalid --chown {spec:?}: give a user, as in --chown=1000:1000 or --chown=app:app"
        )));
    }
    let uid = match user.parse::<u32>() {
        Ok(n) => n,
        Err(_) => lookup(root, "/etc/passwd", user, 2)?,
    };
    let gid = match group {
        None | Some("") => uid,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => lookup(root, "/etc/group", g, 2)?,
        },
    };
    Ok((uid, gid))
}

/// The home directory of `user` (a `USER` value; `None` is root) in the stage's
/// `/etc/passwd`, or `/` when it has no entry (what runc gives such users).
pub(crate) fn home_of(root: &Path, user: Option<&str>) -> String {
    let user = user.unwrap_or("0");
    let name = user.split(':').next().unwrap_or(user);
    let Ok(host) = fsutil::resolve_in_root(root, "/etc/passwd", true) else {
        return "/".to_string();
    };
    let text = std::fs::read_to_string(host).unwrap_or_default();
    for line in text.lines() {
        let parts: Vec<&str> = line.split(':').collect();
        if parts.len() >= 6 && (parts[0] == name || parts[2] == name) {
            return parts[5].to_string();
        }
    }
    "/".to_string()
}

/// Field `field` (the id) of the line named `name` in `file` of the stage.
fn lookup(root: Option<&Path>, file: &str, name: &str, field: usize) -> Result<u32, StepError> {
    let what = if file.ends_with("passwd") {
        "user"
    } else {
        "group"
    };
    let missing = || {
        StepError::new(format!(
            "unable to find {what} {name:?}: the stage has no {file}; use a numeric id or create the {what} in an earlier step"
        ))
    };
    let root = root.ok_or_else(missing)?;
    let host = fsutil::resolve_in_root(root, file, true)?;
    let text = match std::fs::read_to_string(&host) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
        Err(e) => return Err(crate::error::io_step("read", &host)(e)),
    };
    for line in text.lines() {
        let parts: Vec<&str> = line.split(':').collect();
        if parts.first() == Some(&name)
            && let Some(id) = parts.get(field).and_then(|v| v.trim().parse::<u32>().ok())
        {
            return Ok(id);
        }
    }
    Err(StepError::new(format!(
        "unable to find {what} {name:?} in the stage's {file}; use a numeric id or create the {what} in an earlier step"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_names_and_defaults() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("etc")).unwrap();
        std::fs::write(
            tmp.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(tmp.path().join("etc/group"), "root:x:0:\nstaff:x:50:app\n").unwrap();
        let root = Some(tmp.path());
        assert_eq!(resolve_chown("12", None).unwrap(), (12, 12));
        assert_eq!(resolve_chown("12:34", None).unwrap(), (12, 34));
        assert_eq!(resolve_chown("app", root).unwrap(), (1000, 1000));
        assert_eq!(resolve_chown("app:staff", root).unwrap(), (1000, 50));
        assert_eq!(resolve_chown("7:staff", root).unwrap(), (7, 50));
        let e = resolve_chown("nobody", root).unwrap_err();
        assert!(e.0.contains("\"nobody\""), "{}", e.0);
        assert_eq!(home_of(tmp.path(), Some("app")), "/home/app");
        assert_eq!(home_of(tmp.path(), Some("0")), "/root");
        assert_eq!(home_of(tmp.path(), Some("42")), "/");
        let e = resolve_chown("app", None).unwrap_err();
        assert!(e.0.contains("no /etc/passwd"), "{}", e.0);
    }
}
