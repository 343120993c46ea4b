//! Unix accounts from the password and group databases (`getpwuid_r`, `getpwnam_r`,
//! `getgrgid_r`; with a static musl build these read `/etc/passwd` and `/etc/group`).
//! Used by `service install` to name the account a service runs as.

use std::ffi::{CStr, CString};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub home: String,
    /// The name of its primary group (its number when the group has no entry).
    pub group: String,
}

/// The account running this process (its effective uid).
pub fn current() -> Option<Account> {
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    lookup(|pwd, buf, result| {
        // SAFETY: every pointer is valid for the duration of the call; buf's length is given.
        unsafe { libc::getpwuid_r(uid, pwd, buf.as_mut_ptr(), buf.len(), result) }
    })
}

/// The account named `name`.
pub fn by_name(name: &str) -> Option<Account> {
    let cname = CString::new(name).ok()?;
    lookup(|pwd, buf, result| {
        // SAFETY: as in `current`; cname outlives the call.
        unsafe { libc::getpwnam_r(cname.as_ptr(), pwd, buf.as_mut_ptr(), buf.len(), result) }
    })
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn lookup(
    call: impl Fn(*mut libc::passwd, &mut Vec<libc::c_char>, *mut *mut libc::passwd) -> libc::c_int,
) -> Option<Account> {
    let mut buf: Vec<libc::c_char> = vec![0; 16 * 1024];
    // SAFETY: an all-zero passwd is a valid value to be overwritten.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    let rc = call(&mut pwd, &mut buf, &mut result);
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: on success the strings point into buf, NUL-terminated.
    let text = |p: *const libc::c_char| {
        (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    };
    let name = text(pwd.pw_name)?;
    let home = text(pwd.pw_dir).unwrap_or_else(|| "/".into());
    let group = group_name(pwd.pw_gid).unwrap_or_else(|| pwd.pw_gid.to_string());
    Some(Account {
        name,
        uid: pwd.pw_uid,
        home,
        group,
    })
}

fn group_name(gid: libc::gid_t) -> Option<String> {
    let mut buf: Vec<libc::c_char> = vec![0; 16 * 1024];
    // SAFETY: an all-zero group is a valid value to be overwritten.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; buf's length is given.
    let rc = unsafe { libc::getgrgid_r(gid, &mut grp, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() || grp.gr_name.is_null() {
        return None;
    }
    // SAFETY: on success gr_name points into buf, NUL-terminated.
    Some(
        unsafe { CStr::from_ptr(grp.gr_name) }
            .to_string_lossy()
            .into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_found_by_name() {
        let root = by_name("root").expect("every Linux has root");
        assert_eq!(root.uid, 0);
        assert!(!root.home.is_empty());
        assert!(current().is_some());
        assert!(by_name("no-such-account-here").is_none());
        assert!(by_name("a\0b").is_none());
    }
}
