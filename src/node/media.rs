//! Images and attachments that come with a turn (PROTOCOL §3–4), saved under the
//! session's working directory so the agent can read them:
//! images to `<cwd>/.tmp/images/<session>-<ms>/`, attachments (https downloads from an
//! allow-list of hosts) to `<cwd>/.tmp/attachments/<session>-<ms>/`.
//!
//! Runs on a worker thread. Every item is bounded (12 MiB per image and 32 MiB for all
//! the images of a command, so that a command within the limits fits the 48 MiB frame
//! the node takes; 50 MiB and 10 per turn for attachments, checked while streaming); names are reduced to a safe base name,
//! so nothing can be written outside the target directory. A bad item is skipped with a
//! notice; it never fails the turn.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

pub use crate::protocol::limits::{
    MAX_ATTACHMENT_BYTES, MAX_ATTACHMENTS, MAX_IMAGE_BYTES, MAX_IMAGES, MAX_IMAGES_TOTAL,
};
pub const DEFAULT_HOSTS: &[&str] = &["cdn.acedata.cloud", "platform.cdn.acedata.cloud"];

/// What media handling needs from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub allowed_hosts: Vec<String>,
    pub tls: ureq::tls::TlsConfig,
}

/// The outcome for one turn.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Prepared {
    /// Files saved, with a short description each.
    pub saved: Vec<(PathBuf, String)>,
    /// One line per skipped item, for `session.notice`.
    pub notices: Vec<String>,
}

impl Prepared {
    /// The note appended to the prompt (empty when nothing was saved).
    pub fn note(&self) -> String {
        crate::providers::note::attachment_note(&self.saved)
    }
}

pub use crate::protocol::commands::Inline;

/// Save the images and download the attachments of one turn.
pub fn prepare(
    cwd: &Path,
    session: &str,
    images: Option<&Value>,
    attachments: Option<&Value>,
    files: Vec<Inline>,
    settings: &Settings,
) -> Prepared {
    let mut out = Prepared::default();
    let stamp = format!(
        "{}-{}",
        safe_name(session, "session"),
        crate::sys::timefmt::now_ms()
    );
    if let Some(list) = images.and_then(as_list) {
        let dir = cwd.join(".tmp/images").join(&stamp);
        let mut total = 0;
        for (i, item) in list.iter().enumerate() {
            if i >= MAX_IMAGES {
                out.notices
                    .push(format!("only the first {MAX_IMAGES} images were kept"));
                break;
            }
            let size = ["data", "base64", "url"]
                .iter()
                .find_map(|k| item.get(*k).and_then(Value::as_str))
                .or_else(|| item.as_str())
                .map_or(0, |d| d.len() / 4 * 3);
            if total + size > MAX_IMAGES_TOTAL {
                out.notices.push(format!(
                    "image {} skipped: the images of one message may total {} MiB",
                    i + 1,
                    MAX_IMAGES_TOTAL >> 20
                ));
                continue;
            }
            match save_image(&dir, i, item) {
                Ok((p, mime)) => {
                    total += size;
                    out.saved.push((p, mime));
                }
                Err(e) => out.notices.push(format!("image {} skipped: {e}", i + 1)),
            }
        }
    }
    if let Some(list) = attachments.and_then(as_list) {
        let dir = cwd.join(".tmp/attachments").join(&stamp);
        for (i, item) in list.iter().enumerate() {
            if i >= MAX_ATTACHMENTS {
                out.notices.push(format!(
                    "only the first {MAX_ATTACHMENTS} attachments are downloaded"
                ));
                break;
            }
            match download(&dir, i, item, settings) {
                Ok((p, size)) => out.saved.push((p, format!("{size} bytes"))),
                Err(e) => out
                    .notices
                    .push(format!("attachment {} skipped: {e}", i + 1)),
            }
        }
    }
    for (i, f) in files.into_iter().enumerate() {
        let kind = if f.image { "images" } else { "attachments" };
        let dir = cwd.join(".tmp").join(kind).join(&stamp);
        let fallback = format!("file-{}", i + 1);
        let name = safe_name(&f.name, &fallback);
        let saved = unique(&dir, &name).and_then(|p| write_new(&p, &f.bytes).map(|()| p));
        match saved {
            Ok(p) => out.saved.push((p, format!("{} bytes", f.bytes.len()))),
            Err(e) => out
                .notices
                .push(format!("{name} skipped: cannot save it: {e}")),
        }
    }
    out
}

/// The items of a list, or the one item given bare (borrowed: images are big).
fn as_list(v: &Value) -> Option<Vec<&Value>> {
    match v {
        Value::Array(a) => Some(a.iter().collect()),
        Value::Null => None,
        other => Some(vec![other]),
    }
}

/// A base name made of safe characters only (no separators, no leading dots).
pub fn safe_name(raw: &str, fallback: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let mut s: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    while s.starts_with('.') {
        s.remove(0);
    }
    s.truncate(100);
    if s.is_empty() || s.chars().all(|c| c == '_') {
        fallback.to_string()
    } else {
        s
    }
}

fn ext_for(mime: &str, bytes: &[u8]) -> &'static str {
    match mime.to_ascii_lowercase().as_str() {
        "image/png" => return "png",
        "image/jpeg" | "image/jpg" => return "jpg",
        "image/gif" => return "gif",
        "image/webp" => return "webp",
        "image/bmp" => return "bmp",
        _ => {}
    }
    if bytes.starts_with(b"\x89PNG") {
        "png"
    } else if bytes.starts_with(b"\xff\xd8") {
        "jpg"
    } else if bytes.starts_with(b"GIF8") {
        "gif"
    } else if bytes.len() > 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        "webp"
    } else {
        "img"
    }
}

fn save_image(dir: &Path, index: usize, item: &Value) -> Result<(PathBuf, String), String> {
    let (data, name, mut mime) = match item {
        Value::String(s) => (s.as_str(), None, None),
        Value::Object(m) => {
            let data = ["data", "base64", "url"]
                .iter()
                .find_map(|k| m.get(*k).and_then(Value::as_str))
                .ok_or("no data, base64 or url field")?;
            let name = m.get("name").and_then(Value::as_str).map(str::to_string);
            let mime = m
                .get("media_type")
                .or_else(|| m.get("mime"))
                .and_then(Value::as_str)
                .map(str::to_string);
            (data, name, mime)
        }
        _ => return Err("not a string or an object".into()),
    };
    let payload = if let Some(rest) = data.strip_prefix("data:") {
        let (meta, b64) = rest.split_once(',').ok_or("a data URL without a comma")?;
        if !meta.ends_with(";base64") {
            return Err("only base64 data URLs are supported".into());
        }
        if mime.is_none() {
            mime = meta.strip_suffix(";base64").map(str::to_string);
        }
        b64
    } else if data.starts_with("http://") || data.starts_with("https://") {
        return Err("image URLs are not fetched; send the image data".into());
    } else {
        data
    };
    if payload.len() > MAX_IMAGE_BYTES / 3 * 4 + 1024 {
        return Err(format!("larger than {} MiB", MAX_IMAGE_BYTES >> 20));
    }
    let bytes = decode_base64(payload).ok_or("not valid base64")?;
    if bytes.is_empty() {
        return Err("empty".into());
    }
    if bytes.len() > MAX_IMAGE_BYTES {
        return Err(format!("larger than {} MiB", MAX_IMAGE_BYTES >> 20));
    }
    let ext = ext_for(mime.as_deref().unwrap_or(""), &bytes);
    let fallback = format!("image-{}", index + 1);
    let stem_src = name.as_deref().unwrap_or(&fallback);
    let stem = safe_name(stem_src, &fallback);
    let stem = stem
        .rsplit_once('.')
        .map(|(s, _)| s.to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or(stem);
    let path = unique(dir, &format!("{stem}.{ext}")).map_err(|e| e.to_string())?;
    write_new(&path, &bytes).map_err(|e| format!("cannot save it: {e}"))?;
    Ok((path, mime.unwrap_or_else(|| format!("image/{ext}"))))
}

/// Create `dir` and return a path in it named `name` that does not exist yet.
fn unique(dir: &Path, name: &str) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let first = dir.join(name);
    if !first.exists() {
        return Ok(first);
    }
    for n in 2..1000 {
        let p = dir.join(format!("{n}-{name}"));
        if !p.exists() {
            return Ok(p);
        }
    }
    Err(std::io::Error::other("too many files with that name"))
}

fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    f.write_all(bytes)
}

/// `https://host[:port]/path` → (host, last path segment), parsed by `http::Uri` as
/// ureq will parse it. The host is lowercased, without the brackets of an IPv6 literal.
fn parse_https(url: &str) -> Result<(String, String), String> {
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("not a valid URL".into());
    }
    let uri: http::Uri = url.parse().map_err(|_| "not a valid URL")?;
    if uri.scheme() != Some(&http::uri::Scheme::HTTPS) {
        return Err("only https:// URLs are downloaded".into());
    }
    let authority = uri.authority().ok_or("not a valid URL")?;
    if authority.as_str().contains('@') {
        return Err("URLs with credentials are refused".into());
    }
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err("not a valid URL".into());
    }
    let last = uri.path().rsplit('/').next().unwrap_or("").to_string();
    Ok((host.to_ascii_lowercase(), last))
}

fn download(
    dir: &Path,
    index: usize,
    item: &Value,
    settings: &Settings,
) -> Result<(PathBuf, u64), String> {
    let (url, name) = match item {
        Value::String(s) => (s.clone(), None),
        Value::Object(m) => (
            m.get("url")
                .and_then(Value::as_str)
                .ok_or("no url")?
                .to_string(),
            m.get("name").and_then(Value::as_str).map(str::to_string),
        ),
        _ => return Err("not a URL".into()),
    };
    let (host, last) = parse_https(&url)?;
    if !settings
        .allowed_hosts
        .iter()
        .any(|h| h.eq_ignore_ascii_case(&host))
    {
        return Err(format!("host {host} is not on the allowed list"));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_connect(Some(std::time::Duration::from_secs(10)))
        .timeout_global(Some(std::time::Duration::from_secs(300)))
        .tls_config(settings.tls.clone())
        .build()
        .into();
    let mut resp = agent
        .get(&url)
        .call()
        .map_err(|e| format!("download failed: {e}"))?;
    let status = resp.status().as_u16();
    if status != 200 {
        return Err(format!("the server answered HTTP {status}"));
    }
    let declared = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_ATTACHMENT_BYTES) {
        return Err(format!("larger than {} MiB", MAX_ATTACHMENT_BYTES >> 20));
    }
    let fallback = format!("attachment-{}", index + 1);
    let file_name = safe_name(name.as_deref().unwrap_or(&last), &fallback);
    let path = unique(dir, &file_name).map_err(|e| e.to_string())?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| format!("cannot save it: {e}"))?;
    let mut reader = resp
        .body_mut()
        .with_config()
        .limit(MAX_ATTACHMENT_BYTES + 1)
        .reader();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total: u64 = 0;
    let result = loop {
        match reader.read(&mut buf) {
            Ok(0) => break Ok(total),
            Ok(n) => {
                total += n as u64;
                if total > MAX_ATTACHMENT_BYTES {
                    break Err(format!(
                        "larger than {} MiB; download stopped",
                        MAX_ATTACHMENT_BYTES >> 20
                    ));
                }
                if let Err(e) = file.write_all(&buf[..n]) {
                    break Err(format!("cannot save it: {e}"));
                }
            }
            Err(e) => {
                // The body reader reports its limit as ureq's own error inside the io one.
                break Err(match ureq::Error::from(e) {
                    ureq::Error::BodyExceedsLimit(_) => format!(
                        "larger than {} MiB; download stopped",
                        MAX_ATTACHMENT_BYTES >> 20
                    ),
                    _ if total >= MAX_ATTACHMENT_BYTES => format!(
                        "larger than {} MiB; download stopped",
                        MAX_ATTACHMENT_BYTES >> 20
                    ),
                    other => format!("download failed: {other}"),
                });
            }
        }
    };
    match result {
        Ok(n) => Ok((path, n)),
        Err(e) => {
            drop(file);
            let _ = std::fs::remove_file(&path);
            Err(e)
        }
    }
}

/// Standard alphabet, no padding expected (it is stripped first), and the unused low
/// bits of the last symbol not checked, as browsers' and bots' encoders vary there.
const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

/// Decode standard or URL-safe base64 (even mixed); whitespace ignored, padding
/// optional (at most two `=`, nothing after them).
pub fn decode_base64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let clean = |b: &u8| !matches!(b, b' ' | b'\n' | b'\r' | b'\t');
    let mut input: Vec<u8> = s
        .bytes()
        .filter(clean)
        .map(|b| match b {
            b'-' => b'+',
            b'_' => b'/',
            b => b,
        })
        .collect();
    let data = input.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
    if input.len() - data > 2 {
        return None;
    }
    input.truncate(data);
    BASE64.decode(&input).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64() {
        assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVsbG8").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVs\nbG8=").unwrap(), b"hello");
        assert_eq!(
            decode_base64("-_-_").unwrap(),
            decode_base64("+/+/").unwrap()
        );
        assert!(decode_base64("a$bc").is_none());
        assert!(decode_base64("aGVsbG8=x").is_none());
        assert!(decode_base64("a").is_none());
        // Padding: at most two, anywhere whitespace allows, never followed by data.
        assert_eq!(decode_base64(" aGVs bG8 =\r\n").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVsbG8==").unwrap(), b"hello");
        assert!(decode_base64("aGVsbG8===").is_none());
        assert!(decode_base64("aGVs=bG8").is_none());
        // Mixed alphabets, unused low bits not checked, empty input.
        assert_eq!(decode_base64("+_-/").unwrap(), [0xfb, 0xff, 0xbf]);
        assert_eq!(decode_base64("aGVsbG9=").unwrap(), b"hello");
        assert_eq!(decode_base64("").unwrap(), b"");
        assert!(decode_base64("aGVsbG8=\u{e9}").is_none());
    }

    #[test]
    fn names_are_reduced_to_safe_base_names() {
        assert_eq!(safe_name("../../etc/passwd", "f"), "passwd");
        assert_eq!(safe_name("..\\..\\win.ini", "f"), "win.ini");
        assert_eq!(safe_name("...hidden", "f"), "hidden");
        assert_eq!(safe_name("a b/c d.png", "f"), "c_d.png");
        assert_eq!(safe_name("", "f"), "f");
        assert_eq!(safe_name("..", "f"), "f");
        assert_eq!(safe_name("/", "f"), "f");
    }

    #[test]
    fn oversized_and_hostile_images() {
        let dir = std::env::temp_dir().join(format!("cba-media-{}", std::process::id()));
        let settings = Settings {
            allowed_hosts: vec![],
            tls: ureq::tls::TlsConfig::default(),
        };
        let big = "A".repeat((MAX_IMAGE_BYTES / 3 * 4) + 4096);
        let images = serde_json::json!([{"data": big}, "data:image/png,notbase64", {"url": "https://x/y.png"}]);
        let p = prepare(&dir, "s/../x", Some(&images), None, Vec::new(), &settings);
        assert!(p.saved.is_empty());
        assert_eq!(p.notices.len(), 3, "{:?}", p.notices);
        assert!(p.notices[0].contains("larger than 12 MiB"));
        assert!(p.notices[1].contains("base64 data URLs"));
        assert!(p.notices[2].contains("not fetched"));
        assert!(p.note().is_empty());
        // Just over the limit after decoding, under it before the quick length check.
        let just_over = "A".repeat(((MAX_IMAGE_BYTES + 3) / 3) * 4);
        let p = prepare(
            &dir,
            "s",
            Some(&serde_json::json!([just_over])),
            None,
            Vec::new(),
            &settings,
        );
        assert!(
            p.notices[0].contains("larger than 12 MiB"),
            "{:?}",
            p.notices
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn inline_files_stay_in_their_directory() {
        let dir = std::env::temp_dir().join(format!("cba-inline-{}", std::process::id()));
        let settings = Settings {
            allowed_hosts: vec![],
            tls: ureq::tls::TlsConfig::default(),
        };
        let files = vec![
            Inline {
                name: "../../escape.txt".into(),
                bytes: b"doc".to_vec(),
                image: false,
            },
            Inline {
                name: "/etc/passwd".into(),
                bytes: b"img".to_vec(),
                image: true,
            },
        ];
        let p = prepare(&dir, "tg-x", None, None, files, &settings);
        assert_eq!(p.saved.len(), 2, "{:?}", p.notices);
        assert!(p.saved[0].0.starts_with(dir.join(".tmp/attachments")));
        assert!(p.saved[0].0.ends_with("escape.txt"));
        assert!(p.saved[1].0.starts_with(dir.join(".tmp/images")));
        assert!(p.saved[1].0.ends_with("passwd"));
        assert_eq!(std::fs::read(&p.saved[0].0).unwrap(), b"doc");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn urls() {
        assert_eq!(
            parse_https("https://cdn.x.cloud/a/b.pdf?x=1").unwrap(),
            ("cdn.x.cloud".into(), "b.pdf".into())
        );
        assert!(parse_https("http://cdn.x.cloud/a").is_err());
        assert!(parse_https("https://user:pw@cdn.x.cloud/a").is_err());
        assert_eq!(
            parse_https("https://LOCALHOST:8443/f").unwrap().0,
            "localhost"
        );
        assert_eq!(
            parse_https("https://[::1]:8443/a/").unwrap(),
            ("::1".into(), "".into())
        );
        assert_eq!(
            parse_https("https://h.x/a@b/c.txt#frag").unwrap(),
            ("h.x".into(), "c.txt".into())
        );
        assert!(parse_https("https://user@h.x/a").is_err());
        assert!(parse_https("https:///a").is_err());
        assert!(parse_https("https://h.x/a b").is_err());
        // The scheme is case-insensitive (ureq reads it so), the host lowercased.
        assert_eq!(
            parse_https("HTTPS://H.x/A").unwrap(),
            ("h.x".into(), "A".into())
        );
        assert!(parse_https("ftp://h.x/a").is_err());
    }
}
