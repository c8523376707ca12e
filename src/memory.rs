//! How the process takes memory from the kernel. herald allocates with mimalloc, which asks for
//! transparent huge pages on the memory it reserves. With them an empty herald was resident at
//! 30.5–32.4 MiB instead of 19–20, a push channel's idle open stream took 24.6–27.3 KB instead of
//! 14.7–15.0, and each Subscribe that grew the heap waited for the kernel to zero a 2 MiB page
//! (6% of herald's samples in a profile of Subscribes on PostgreSQL). So they are turned off for
//! the process before it takes much (see BENCHMARKS.md, the twenty-fourth pass).

/// Turns transparent huge pages off for this process and those it starts, where the kernel
/// allows it (Linux): whether they are off.
pub fn without_huge_pages() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: PR_SET_THP_DISABLE takes integers only and changes only how this process's
        // memory is paged.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// The kernel reports the process's setting in `/proc/self/status`.
    fn huge_pages_enabled() -> Option<bool> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("THP_enabled:"))?;
        Some(line.split_whitespace().nth(1)? == "1")
    }

    #[test]
    fn huge_pages_are_off_once_asked() {
        assert!(
            without_huge_pages(),
            "the kernel refused PR_SET_THP_DISABLE"
        );
        assert_eq!(huge_pages_enabled(), Some(false));
    }
}
