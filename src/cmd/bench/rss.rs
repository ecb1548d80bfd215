//! Resident memory of this process, read from `/proc/self/status`.

/// VmRSS in bytes, or None where /proc is unavailable.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vmrss(&status)
}

fn parse_vmrss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut it = line["VmRSS:".len()..].split_whitespace();
    let n: u64 = it.next()?.parse().ok()?;
    match it.next() {
        Some("kB") => Some(n * 1024),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vmrss_in_kilobytes() {
        let s = "Name:\tx\nVmPeak:\t  9 kB\nVmRSS:\t   43210 kB\nThreads:\t3\n";
        assert_eq!(parse_vmrss(s), Some(43210 * 1024));
        assert_eq!(parse_vmrss("VmRSS: 12 MB\n"), None);
        assert_eq!(parse_vmrss("Name: x\n"), None);
    }

    #[test]
    fn this_process_has_a_resident_size() {
        assert!(resident_bytes().unwrap() > 1024 * 1024);
    }
}
