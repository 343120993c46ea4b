//! How much memory this daemon (and the agents it starts) may still use: the lower of
//! `/proc/meminfo`'s `MemAvailable` and, inside a cgroup (a container, a systemd service
//! with `MemoryMax`), the cgroup's limit minus its usage, for cgroup v2 and v1. Also an
//! agent's resident size, for `status`. Reads small kernel files (procfs, cgroupfs: no
//! disk); no threads.
//!
//! Tests point the readers at files of their own through two variables that are for
//! tests only: `CODING_BRIDGE_MEMINFO` (a file in `/proc/meminfo`'s format) and
//! `CODING_BRIDGE_CGROUP_DIR` (a directory holding `memory.max` and `memory.current`,
//! or v1's `memory.limit_in_bytes` and `memory.usage_in_bytes`).

use std::path::{Path, PathBuf};

const MIB: u64 = 1 << 20;
/// A cgroup v1 limit at or above this means "no limit" (the kernel writes ~2^63).
const NO_LIMIT: u64 = 1 << 60;

/// Where the figures are read from.
#[derive(Debug, Clone)]
pub struct Sources {
    pub meminfo: PathBuf,
    /// The cgroup's own directory, when the daemon runs in one with a memory controller.
    pub cgroup: Option<PathBuf>,
}

impl Sources {
    /// This system's files (or the test-only overrides, see the module doc).
    pub fn system() -> Sources {
        let meminfo = std::env::var_os("CODING_BRIDGE_MEMINFO")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/proc/meminfo"));
        let cgroup = match std::env::var_os("CODING_BRIDGE_CGROUP_DIR") {
            Some(d) if d.is_empty() => None,
            Some(d) => Some(PathBuf::from(d)),
            None => std::fs::read_to_string("/proc/self/cgroup")
                .ok()
                .and_then(|t| cgroup_dir(&t, Path::new("/sys/fs/cgroup"))),
        };
        Sources { meminfo, cgroup }
    }
}

/// A cgroup's memory limit and what it uses now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cgroup {
    pub limit: u64,
    pub usage: u64,
}

/// The memory figures that decide whether another agent may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// What may still be used: the lower of `MemAvailable` and the cgroup's headroom.
    pub available: u64,
    /// All there is to use: the lower of `MemTotal` and the cgroup's limit.
    pub total: u64,
    pub meminfo_available: Option<u64>,
    /// The cgroup's limit and usage, when it has a limit.
    pub cgroup: Option<Cgroup>,
}

impl Memory {
    /// "812 MiB available (of 2048 MiB; cgroup limit 1024 MiB, 212 MiB used)", for people.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} MiB available (of {} MiB",
            self.available / MIB,
            self.total / MIB
        );
        if let Some(c) = self.cgroup {
            s.push_str(&format!(
                "; cgroup limit {} MiB, {} MiB used",
                c.limit / MIB,
                c.usage / MIB
            ));
        }
        s.push(')');
        s
    }
}

/// The memory available now, or `None` when even `/proc/meminfo` cannot be read (not
/// Linux, or no procfs): the guard then lets agents start.
pub fn read(src: &Sources) -> Option<Memory> {
    let info = std::fs::read_to_string(&src.meminfo).ok()?;
    let field = |name: &str| meminfo_field(&info, name);
    let mem_total = field("MemTotal")?;
    let mem_available = field("MemAvailable").or_else(|| {
        // Kernels before 3.14: free + buffers + page cache, as `free` guessed then.
        Some(field("MemFree")? + field("Buffers").unwrap_or(0) + field("Cached").unwrap_or(0))
    });
    let cgroup = src.cgroup.as_deref().and_then(read_cgroup);
    let mut available = mem_available.unwrap_or(mem_total);
    let mut total = mem_total;
    if let Some(c) = cgroup {
        available = available.min(c.limit.saturating_sub(c.usage));
        total = total.min(c.limit);
    }
    Some(Memory {
        available,
        total,
        meminfo_available: mem_available,
        cgroup,
    })
}

/// The resident size of process `pid` (its `VmRSS`), if it runs.
pub fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    meminfo_field(&status, "VmRSS")
}

/// How many agents a host with `total` bytes to use can hold: one per 512 MiB, at
/// least 2, at most 16.
pub fn default_max_agents(total: u64) -> usize {
    ((total / (512 * MIB)) as usize).clamp(2, 16)
}

/// A `Name:   1234 kB` line's value, in bytes.
fn meminfo_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix(':')?;
        let mut parts = rest.split_whitespace();
        let n: u64 = parts.next()?.parse().ok()?;
        Some(match parts.next() {
            Some("kB") => n.saturating_mul(1024),
            _ => n,
        })
    })
}

/// A cgroup directory's limit and usage (v2 files, else v1's); `None` without a limit.
fn read_cgroup(dir: &Path) -> Option<Cgroup> {
    let num = |name: &str| -> Option<String> {
        std::fs::read_to_string(dir.join(name))
            .ok()
            .map(|t| t.trim().to_string())
    };
    let (limit, usage) = match num("memory.max") {
        Some(max) => (max, num("memory.current")?),
        None => (num("memory.limit_in_bytes")?, num("memory.usage_in_bytes")?),
    };
    // "max" (v2) or a huge number (v1): no limit.
    let limit: u64 = limit.parse().ok().filter(|l| *l < NO_LIMIT)?;
    let usage: u64 = usage.parse().ok()?;
    Some(Cgroup { limit, usage })
}

/// The directory of this process's memory cgroup, from `/proc/self/cgroup`'s text: the
/// v2 entry (`0::/path`), else v1's memory controller (`N:memory:/path`). A path not
/// visible here (a container without its own cgroup namespace) falls back to the root.
fn cgroup_dir(text: &str, root: &Path) -> Option<PathBuf> {
    let mut v1 = None;
    let mut v2 = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let rel = path.trim_start_matches('/');
        if id == "0" && controllers.is_empty() {
            v2 = Some(root.join(rel));
        } else if controllers.split(',').any(|c| c == "memory") {
            v1 = Some(root.join("memory").join(rel));
        }
    }
    let pick = |dir: PathBuf, base: PathBuf| if dir.is_dir() { dir } else { base };
    match (v1, v2) {
        (Some(d), _) => Some(pick(d, root.join("memory"))),
        (None, Some(d)) => Some(pick(d, root.to_path_buf())),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("cba-mem-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    const MEMINFO: &str = "MemTotal:        4000000 kB\nMemFree:          100000 kB\n\
                           MemAvailable:    1000000 kB\nBuffers:           20000 kB\n";

    #[test]
    fn the_lower_of_memavailable_and_the_cgroups_headroom() {
        let d = dir("v2");
        std::fs::write(d.join("meminfo"), MEMINFO).unwrap();
        let src = Sources {
            meminfo: d.join("meminfo"),
            cgroup: None,
        };
        let m = read(&src).unwrap();
        assert_eq!(m.available, 1_000_000 * 1024);
        assert_eq!(m.total, 4_000_000 * 1024);
        // v2: 512 MiB limit, 400 MiB used: 112 MiB left, and the limit is the total.
        std::fs::write(d.join("memory.max"), format!("{}\n", 512 * MIB)).unwrap();
        std::fs::write(d.join("memory.current"), format!("{}\n", 400 * MIB)).unwrap();
        let src = Sources {
            cgroup: Some(d.clone()),
            ..src
        };
        let m = read(&src).unwrap();
        assert_eq!(m.available, 112 * MIB);
        assert_eq!(m.total, 512 * MIB);
        assert!(
            m.describe().contains("cgroup limit 512 MiB"),
            "{}",
            m.describe()
        );
        // No limit ("max"): MemAvailable alone.
        std::fs::write(d.join("memory.max"), "max\n").unwrap();
        assert_eq!(read(&src).unwrap().available, 1_000_000 * 1024);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn cgroup_v1_and_old_kernels() {
        let d = dir("v1");
        std::fs::write(
            d.join("meminfo"),
            "MemTotal: 2000000 kB\nMemFree: 300000 kB\nBuffers: 100000 kB\nCached: 100000 kB\n",
        )
        .unwrap();
        std::fs::write(d.join("memory.limit_in_bytes"), format!("{}", 1024 * MIB)).unwrap();
        std::fs::write(d.join("memory.usage_in_bytes"), format!("{}", 1000 * MIB)).unwrap();
        let m = read(&Sources {
            meminfo: d.join("meminfo"),
            cgroup: Some(d.clone()),
        })
        .unwrap();
        assert_eq!(
            m.meminfo_available,
            Some(500_000 * 1024),
            "free + buffers + cached"
        );
        assert_eq!(m.available, 24 * MIB);
        std::fs::write(d.join("memory.limit_in_bytes"), "9223372036854771712").unwrap();
        let m = read(&Sources {
            meminfo: d.join("meminfo"),
            cgroup: Some(d.clone()),
        })
        .unwrap();
        assert_eq!(m.cgroup, None, "an unlimited v1 group");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn where_the_cgroup_is() {
        let root = dir("root");
        std::fs::create_dir_all(root.join("system.slice/cba.service")).unwrap();
        let v2 = "0::/system.slice/cba.service\n";
        assert_eq!(
            cgroup_dir(v2, &root),
            Some(root.join("system.slice/cba.service"))
        );
        // Not visible here: the root (a container's own view).
        assert_eq!(cgroup_dir("0::/elsewhere\n", &root), Some(root.clone()));
        let v1 = "12:cpu,cpuacct:/x\n9:memory:/docker/abc\n0::/\n";
        assert_eq!(cgroup_dir(v1, &root), Some(root.join("memory")));
        assert_eq!(cgroup_dir("garbage", &root), None);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn agents_per_host() {
        assert_eq!(default_max_agents(512 * MIB), 2, "at least 2");
        assert_eq!(default_max_agents(2048 * MIB), 4);
        assert_eq!(default_max_agents(4096 * MIB), 8);
        assert_eq!(default_max_agents(64 << 30), 16, "at most 16");
        assert!(rss_of(std::process::id()).is_some_and(|r| r > 0));
    }
}
