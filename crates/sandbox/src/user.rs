//! Resolves a Dockerfile `USER` (`uid`, `uid:gid`, `name`, `name:group`) against the root
//! filesystem's `/etc/passwd` and `/etc/group`, with runc's rules: a name must exist, a number
//! need not; supplementary groups come from `/etc/group` membership only when no group is given.
//! Parses text handed to it; reading the files is the caller's job.

use std::path::PathBuf;

/// The ids a command runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (`setgroups`); empty when none.
    pub groups: Vec<u32>,
    /// The home directory from `/etc/passwd`, for `HOME` when the environment lacks it.
    pub home: String,
}

/// Why a `USER` cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error(
        "unable to find user {user:?}: no matching entry in {file}; create it in an earlier step (useradd/adduser) or use a numeric uid"
    )]
    UnknownUser { user: String, file: PathBuf },
    #[error(
        "unable to find group {group:?}: no matching entry in {file}; create it in an earlier step (groupadd/addgroup) or use a numeric gid"
    )]
    UnknownGroup { group: String, file: PathBuf },
    #[error("invalid USER {spec:?}: expected uid, uid:gid, name or name:group")]
    Invalid { spec: String },
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines().filter_map(|line| {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let mut f = line.split(':');
        let name = f.next()?;
        let _password = f.next()?;
        let uid = f.next()?.parse().ok()?;
        let gid = f.next()?.parse().ok()?;
        let _gecos = f.next();
        let home = f.next().unwrap_or("");
        Some(PasswdEntry {
            name,
            uid,
            gid,
            home,
        })
    })
}

fn group_entries(text: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    text.lines().filter_map(|line| {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let mut f = line.split(':');
        let name = f.next()?;
        let _password = f.next()?;
        let gid = f.next()?.parse().ok()?;
        let members = f
            .next()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .collect();
        Some(GroupEntry { name, gid, members })
    })
}

/// Files the lookup reads, for error messages.
pub(crate) struct UserFiles<'a> {
    pub passwd: Option<&'a str>,
    pub group: Option<&'a str>,
    pub passwd_path: PathBuf,
    pub group_path: PathBuf,
}

/// Resolves `spec` (`None` or empty: root).
pub(crate) fn resolve(
    spec: Option<&str>,
    files: &UserFiles<'_>,
) -> Result<ResolvedUser, UserError> {
    let spec = spec.map(str::trim).filter(|s| !s.is_empty()).unwrap_or("0");
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user_part.is_empty() || group_part.is_some_and(str::is_empty) {
        return Err(UserError::Invalid {
            spec: spec.to_string(),
        });
    }
    let numeric_uid = user_part.parse::<u32>().ok();
    let passwd = files.passwd.unwrap_or("");
    let entry = passwd_entries(passwd)
        .find(|e| e.name == user_part || numeric_uid.is_some_and(|n| n == e.uid));
    let (uid, mut gid, name, home) = match (entry, numeric_uid) {
        (Some(e), _) => (e.uid, e.gid, Some(e.name), e.home.to_string()),
        (None, Some(n)) => (n, 0, None, if n == 0 { "/root" } else { "/" }.to_string()),
        (None, None) => {
            return Err(UserError::UnknownUser {
                user: user_part.to_string(),
                file: files.passwd_path.clone(),
            });
        }
    };
    let group = files.group.unwrap_or("");
    let mut groups = Vec::new();
    match group_part {
        Some(g) => {
            let numeric_gid = g.parse::<u32>().ok();
            gid = match group_entries(group)
                .find(|e| e.name == g || numeric_gid.is_some_and(|n| n == e.gid))
            {
                Some(e) => e.gid,
                None => numeric_gid.ok_or_else(|| UserError::UnknownGroup {
                    group: g.to_string(),
                    file: files.group_path.clone(),
                })?,
            };
        }
        None => {
            // Supplementary groups only in the implicit form, like runc.
            if let Some(name) = name {
                for e in group_entries(group) {
                    if e.members.contains(&name) && !groups.contains(&e.gid) {
                        groups.push(e.gid);
                    }
                }
            }
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        groups,
        home: if home.is_empty() {
            "/".to_string()
        } else {
            home
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        # a comment\n\
        builder:x:1000:1000:Builder,,,:/home/builder:/bin/sh\n\
        broken line\n";
    const GROUP: &str = "root:x:0:\nadm:x:4:builder\nstaff:x:50:someone, builder\nbuilder:x:1000:\nwheel:x:10:root\n";

    fn files<'a>(passwd: Option<&'a str>, group: Option<&'a str>) -> UserFiles<'a> {
        UserFiles {
            passwd,
            group,
            passwd_path: "/r/etc/passwd".into(),
            group_path: "/r/etc/group".into(),
        }
    }

    #[test]
    fn names_resolve_with_supplementary_groups() {
        let u = resolve(Some("builder"), &files(Some(PASSWD), Some(GROUP))).expect("user");
        assert_eq!((u.uid, u.gid), (1000, 1000));
        assert_eq!(u.groups, [4, 50]);
        assert_eq!(u.home, "/home/builder");
        let root = resolve(None, &files(Some(PASSWD), Some(GROUP))).expect("root");
        assert_eq!(
            (root.uid, root.gid, root.groups.as_slice()),
            (0, 0, &[10][..])
        );
        assert_eq!(root.home, "/root");
    }

    #[test]
    fn explicit_group_replaces_primary_and_drops_supplementary() {
        let u = resolve(Some("builder:staff"), &files(Some(PASSWD), Some(GROUP))).expect("user");
        assert_eq!((u.uid, u.gid), (1000, 50));
        assert!(u.groups.is_empty());
        let n = resolve(Some("1000:123"), &files(Some(PASSWD), Some(GROUP))).expect("numeric");
        assert_eq!((n.uid, n.gid), (1000, 123));
    }

    #[test]
    fn numbers_need_no_entry_but_names_do() {
        let u = resolve(Some("4242"), &files(None, None)).expect("numeric");
        assert_eq!((u.uid, u.gid, u.home.as_str()), (4242, 0, "/"));
        let err = resolve(Some("nobody"), &files(Some(PASSWD), None)).expect_err("unknown");
        assert!(err.to_string().contains("\"nobody\""), "{err}");
        assert!(err.to_string().contains("/r/etc/passwd"), "{err}");
        let err = resolve(Some("builder:nogroup"), &files(Some(PASSWD), Some(GROUP)))
            .expect_err("unknown group");
        assert!(err.to_string().contains("/r/etc/group"), "{err}");
        assert!(matches!(
            resolve(Some("a:"), &files(None, None)),
            Err(UserError::Invalid { .. })
        ));
    }

    #[test]
    fn uid_zero_without_passwd_is_root_with_home_root() {
        let u = resolve(Some("0"), &files(None, None)).expect("root");
        assert_eq!((u.uid, u.gid, u.home.as_str()), (0, 0, "/root"));
    }
}
