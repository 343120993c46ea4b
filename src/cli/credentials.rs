//! The node's credentials: `<config_dir>/credentials.json` holding `node_token`,
//! `node_name` and `bridge_url`, written 0600 through [`crate::sys::fsutil`]. A token in
//! `CODING_BRIDGE_NODE_TOKEN` takes the file's place and is never written anywhere.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::cli::config::Config;
use crate::sys::secret::Secret;

/// The largest credentials file we will read; anything bigger is not ours.
const MAX_FILE_BYTES: u64 = 64 * 1024;

#[derive(Debug, Clone)]
pub struct Credentials {
    pub node_token: Secret,
    pub node_name: String,
    pub bridge_url: String,
}

/// Where the credentials in use came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    File,
    Env,
}

/// The result of looking for credentials.
#[derive(Debug)]
pub enum Loaded {
    Found(Credentials, Source),
    Missing,
    /// The file exists but cannot be used; it reads as "not paired".
    Unusable {
        path: PathBuf,
        reason: String,
    },
}

/// The credentials this configuration runs with: the environment token first, then the file.
pub fn load(cfg: &Config) -> Loaded {
    if let Some(token) = &cfg.node_token {
        return Loaded::Found(
            Credentials {
                node_token: token.clone(),
                node_name: cfg.node_name.clone(),
                bridge_url: cfg.bridge_url.clone(),
            },
            Source::Env,
        );
    }
    load_file(&cfg.credentials_path())
}

/// Read `path` as a credentials file.
pub fn load_file(path: &Path) -> Loaded {
    let unusable = |reason: String| Loaded::Unusable {
        path: path.to_path_buf(),
        reason,
    };
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Loaded::Missing,
        Err(e) => return unusable(e.to_string()),
    };
    if meta.len() > MAX_FILE_BYTES {
        return unusable(format!("it is {} bytes, too large", meta.len()));
    }
    let text = match fs::read(path) {
        Ok(t) => t,
        Err(e) => return unusable(e.to_string()),
    };
    let value: Value = match serde_json::from_slice(&text) {
        Ok(v) => v,
        Err(e) => return unusable(format!("it is not valid JSON ({e})")),
    };
    let field = |k: &str| value.get(k).and_then(Value::as_str).map(str::trim);
    match field("node_token") {
        Some(tok) if !tok.is_empty() => Loaded::Found(
            Credentials {
                node_token: Secret::new(tok),
                node_name: field("node_name").unwrap_or("").to_string(),
                bridge_url: field("bridge_url").unwrap_or("").to_string(),
            },
            Source::File,
        ),
        _ => unusable("it has no node_token".into()),
    }
}

/// Store `creds` in `<config_dir>/credentials.json` (dir 0700, file 0600 from the first byte).
pub fn save(config_dir: &Path, creds: &Credentials) -> io::Result<PathBuf> {
    crate::sys::fsutil::ensure_private_dir(config_dir)?;
    let path = config_dir.join("credentials.json");
    let body = json!({
        "node_token": creds.node_token.expose(),
        "node_name": creds.node_name,
        "bridge_url": creds.bridge_url,
    });
    let mut bytes = serde_json::to_vec_pretty(&body).map_err(io::Error::other)?;
    bytes.push(b'\n');
    crate::sys::fsutil::write_private_file(&path, &bytes)?;
    Ok(path)
}

/// Delete the credentials file; `Ok(true)` when there was one.
pub fn remove(config_dir: &Path) -> io::Result<bool> {
    match fs::remove_file(config_dir.join("credentials.json")) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn round_trip_and_corruption() {
        let dir = std::env::temp_dir().join(format!("cba-creds-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let creds = Credentials {
            node_token: Secret::new("tok-abc"),
            node_name: "pi".into(),
            bridge_url: "https://relay".into(),
        };
        let path = save(&dir.join("cfg"), &creds).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(dir.join("cfg")).unwrap().permissions().mode() & 0o777,
            0o700
        );
        match load_file(&path) {
            Loaded::Found(c, Source::File) => {
                assert_eq!(c.node_token.expose(), "tok-abc");
                assert_eq!(c.node_name, "pi");
            }
            other => panic!("{other:?}"),
        }
        fs::write(&path, b"{not json").unwrap();
        assert!(matches!(load_file(&path), Loaded::Unusable { .. }));
        fs::write(&path, b"{\"node_token\": 5}").unwrap();
        assert!(matches!(load_file(&path), Loaded::Unusable { .. }));
        assert!(remove(&dir.join("cfg")).unwrap());
        assert!(!remove(&dir.join("cfg")).unwrap());
        assert!(matches!(load_file(&path), Loaded::Missing));
        fs::remove_dir_all(&dir).unwrap();
    }
}
