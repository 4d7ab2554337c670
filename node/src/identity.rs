//! `user` and `group`: the uid and gid a replica runs as, looked up in the
//! node's `/etc/passwd` and `/etc/group` (local accounts; no NSS).

use std::path::Path;

/// The uid and gid for `user` (and `group`, else the user's primary group).
/// Refuses uid 0 unless `allow_root`.
pub fn resolve(
    user: &str,
    group: Option<&str>,
    allow_root: bool,
    etc: &Path,
) -> Result<(u32, u32), String> {
    let passwd = std::fs::read_to_string(etc.join("passwd"))
        .map_err(|e| format!("cannot read {}: {e}", etc.join("passwd").display()))?;
    let (uid, primary) = passwd
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let uid = f.nth(1)?.parse::<u32>().ok()?;
            let gid = f.next()?.parse::<u32>().ok()?;
            (name == user).then_some((uid, gid))
        })
        .next()
        .ok_or_else(|| {
            format!("user `{user}` does not exist on this node (not in /etc/passwd); create it, or change `user`")
        })?;
    if uid == 0 && !allow_root {
        return Err(format!(
            "this node does not run replicas as root (`user {user}`); start it with --allow-root, or run the app as another user"
        ));
    }
    let gid = match group {
        None => primary,
        Some(g) => {
            let groups = std::fs::read_to_string(etc.join("group"))
                .map_err(|e| format!("cannot read {}: {e}", etc.join("group").display()))?;
            groups
                .lines()
                .filter_map(|l| {
                    let mut f = l.split(':');
                    let name = f.next()?;
                    let gid = f.nth(1)?.parse::<u32>().ok()?;
                    (name == g).then_some(gid)
                })
                .next()
                .ok_or_else(|| {
                    format!("group `{g}` does not exist on this node (not in /etc/group); create it, or change `group`")
                })?
        }
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_and_groups_resolve_from_the_files_and_root_needs_a_flag() {
        let etc = std::env::temp_dir().join(format!("skr8tr-etc-{}", std::process::id()));
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(
            etc.join("passwd"),
            "root:x:0:0:root:/root:/bin/sh\nbroken\npg:x:70:71::/var/lib/pg:/bin/false\n",
        )
        .unwrap();
        std::fs::write(etc.join("group"), "root:x:0:\ndba:x:90:pg\n").unwrap();
        assert_eq!(resolve("pg", None, false, &etc), Ok((70, 71)));
        assert_eq!(resolve("pg", Some("dba"), false, &etc), Ok((70, 90)));
        assert!(
            resolve("nope", None, false, &etc)
                .unwrap_err()
                .contains("does not exist")
        );
        assert!(
            resolve("pg", Some("x"), false, &etc)
                .unwrap_err()
                .contains("group `x`")
        );
        assert!(
            resolve("root", None, false, &etc)
                .unwrap_err()
                .contains("--allow-root")
        );
        assert_eq!(resolve("root", None, true, &etc), Ok((0, 0)));
        let _ = std::fs::remove_dir_all(&etc);
    }
}
