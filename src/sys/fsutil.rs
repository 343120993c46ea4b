//! Private files and directories. The config dir is created 0700 and secrets are written
//! through a temp file that is *created* 0600 (never chmod-ed afterwards, so there is no
//! window where another user could open it), fsynced, then renamed over the target.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Create `dir` (and missing parents) with mode 0700. An existing dir that is open to
/// group or others is tightened to 0700 when we can; failing that is reported, not fatal.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0
                && let Err(e) = fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            {
                crate::log_warn!(
                    "config dir {} is mode {mode:o} and could not be made private: {e}",
                    dir.display()
                );
            }
            Ok(())
        }
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a directory", dir.display()),
        )),
        Err(_) => DirBuilder::new().recursive(true).mode(0o700).create(dir),
    }
}

/// `~` or `~/rest` with `home` in front; anything else (or no home) as written.
pub fn expand_home(p: &str, home: Option<&Path>) -> PathBuf {
    match (p.strip_prefix('~'), home) {
        (Some(rest), Some(h)) if rest.is_empty() || rest.starts_with('/') => {
            h.join(rest.trim_start_matches('/'))
        }
        _ => PathBuf::from(p),
    }
}

/// Atomically replace `path` with `bytes`, readable by the owner only from the first byte.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_private_file_with(path, |file| file.write_all(bytes))
}

/// Like [`write_private_file`], with the writing done by `fill` on the open temp file.
pub fn write_private_file_with(
    path: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    replace(path, fill, true)
}

/// Like [`write_private_file`] without waiting for the disk: still all-or-nothing for
/// readers, but a power cut may lose the latest version. For small state the hub thread
/// writes often (an fsync on an SD card can take a second).
pub fn replace_private_file_quick(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace(path, |file| file.write_all(bytes), false)
}

fn replace(
    path: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
    durable: bool,
) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    // Unique per write (two writes in one millisecond must not share a temp file).
    let tmp = dir.join(format!(
        ".{name}.tmp.{}.{}",
        std::process::id(),
        crate::sys::ids::new_id()
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        fill(&mut file)?;
        if durable {
            file.sync_all()?;
        }
        drop(file);
        fs::rename(&tmp, path)?;
        // Make the rename itself durable; a failure here is harmless for correctness.
        if durable && let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!(
            "cba-fsutil-{name}-{}-{}",
            std::process::id(),
            crate::sys::timefmt::now_ms()
        ));
        let _ = fs::remove_dir_all(&p);
        p
    }

    #[test]
    fn home_expansion() {
        let h = Path::new("/home/u");
        assert_eq!(expand_home("~", Some(h)), PathBuf::from("/home/u"));
        assert_eq!(expand_home("~/a/b", Some(h)), PathBuf::from("/home/u/a/b"));
        assert_eq!(expand_home("~bob/x", Some(h)), PathBuf::from("~bob/x"));
        assert_eq!(expand_home("~/a", None), PathBuf::from("~/a"));
        assert_eq!(expand_home("/abs", Some(h)), PathBuf::from("/abs"));
    }

    #[test]
    fn file_is_0600_before_the_first_byte() {
        let dir = scratch("first-byte");
        ensure_private_dir(&dir).unwrap();
        let target = dir.join("credentials.json");
        write_private_file_with(&target, |f| {
            assert_eq!(f.metadata()?.len(), 0);
            assert_eq!(f.metadata()?.permissions().mode() & 0o777, 0o600);
            f.write_all(b"{}")
        })
        .unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"{}");
        assert_eq!(
            fs::metadata(&target).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // no temp file left behind
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn failed_write_leaves_target_and_no_temp() {
        let dir = scratch("failed");
        ensure_private_dir(&dir).unwrap();
        let target = dir.join("credentials.json");
        fs::write(&target, b"old").unwrap();
        let err = write_private_file_with(&target, |_| Err(io::Error::other("boom")));
        assert!(err.is_err());
        assert_eq!(fs::read(&target).unwrap(), b"old");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn concurrent_writes_of_one_file_all_succeed() {
        // Two saves in the same millisecond must not share a temp file (issue 10).
        let dir = scratch("concurrent");
        ensure_private_dir(&dir).unwrap();
        let target = dir.join("sidecar.json");
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let target = target.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        write_private_file(&target, format!("{t}-{i}").as_bytes())
                            .expect("every write succeeds");
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "no temp file left");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn dirs_are_0700_and_loose_ones_tightened() {
        let dir = scratch("dir");
        let nested = dir.join("a/b");
        ensure_private_dir(&nested).unwrap();
        assert_eq!(
            fs::metadata(&nested).unwrap().permissions().mode() & 0o777,
            0o700
        );
        fs::set_permissions(&nested, fs::Permissions::from_mode(0o755)).unwrap();
        ensure_private_dir(&nested).unwrap();
        assert_eq!(
            fs::metadata(&nested).unwrap().permissions().mode() & 0o777,
            0o700
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
