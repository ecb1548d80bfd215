//! Failed logins per client address, with exponential backoff.
//!
//! Password checks are slow on purpose, so an address that keeps failing is
//! told to wait (429) instead of being checked again: the first
//! [`FREE_FAILURES`] failures cost nothing, then each further one blocks the
//! address for twice as long as the last, up to [`MAX_BLOCK`]. A success
//! forgets the address; so does [`FORGET_AFTER`] without a failure.
//!
//! Memory is bounded: IPv6 clients count by /64 (one subscriber's prefix),
//! and once [`MAX_ENTRIES`] addresses are tracked, new ones share a single
//! entry, so a flood from many addresses ends up blocked as a whole.
//!
//! Times are passed in, so the rules can be tested without waiting.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures per address before any waiting.
pub(crate) const FREE_FAILURES: u32 = 5;
/// Longest block after a failure.
pub(crate) const MAX_BLOCK: Duration = Duration::from_secs(60);
/// An address without a failure for this long starts afresh.
pub(crate) const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Addresses tracked one by one; the rest share an entry.
pub(crate) const MAX_ENTRIES: usize = 4096;

/// The entry that untracked addresses share once the table is full.
const OVERFLOW: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

#[derive(Debug, Default)]
pub(crate) struct FailureLimiter {
    entries: Mutex<HashMap<IpAddr, Entry>>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last_failure: Instant,
    blocked_until: Option<Instant>,
}

/// What a failure did, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The first failure from this address in a while (worth one log line).
    First,
    /// Counted, nothing to say.
    Counted,
    /// The address is now blocked for this long after `failures` failures.
    Blocked { failures: u32, wait: Duration },
}

impl FailureLimiter {
    /// `Err(wait)` while `ip` is blocked: how long it has to wait.
    pub(crate) fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let entries = self.entries.lock().unwrap();
        let entry = entries.get(&key(ip)).or_else(|| entries.get(&OVERFLOW));
        match entry.and_then(|e| e.blocked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Records a failed login from `ip`.
    pub(crate) fn failed(&self, ip: IpAddr, now: Instant) -> Failure {
        let mut entries = self.entries.lock().unwrap();
        let mut k = key(ip);
        if !entries.contains_key(&k) && entries.len() >= MAX_ENTRIES {
            entries.retain(|_, e| !e.stale(now));
            if entries.len() >= MAX_ENTRIES {
                k = OVERFLOW;
            }
        }
        let entry = entries.entry(k).or_insert(Entry {
            failures: 0,
            last_failure: now,
            blocked_until: None,
        });
        if entry.stale(now) {
            *entry = Entry {
                failures: 0,
                last_failure: now,
                blocked_until: None,
            };
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last_failure = now;
        if entry.failures < FREE_FAILURES {
            return if entry.failures == 1 {
                Failure::First
            } else {
                Failure::Counted
            };
        }
        let wait = backoff(entry.failures);
        entry.blocked_until = Some(now + wait);
        Failure::Blocked {
            failures: entry.failures,
            wait,
        }
    }

    /// A successful login from `ip`: its failures are forgotten.
    pub(crate) fn succeeded(&self, ip: IpAddr) {
        self.entries.lock().unwrap().remove(&key(ip));
    }
}

impl Entry {
    fn stale(&self, now: Instant) -> bool {
        let blocked = self.blocked_until.is_some_and(|until| until > now);
        !blocked && now.saturating_duration_since(self.last_failure) >= FORGET_AFTER
    }
}

/// The block after the `failures`th failure (from [`FREE_FAILURES`] on):
/// 1 s, 2 s, 4 s, ... at most [`MAX_BLOCK`].
fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(FREE_FAILURES).min(16);
    Duration::from_secs(1u64 << doublings).min(MAX_BLOCK)
}

/// IPv4 as is (also when mapped into IPv6); IPv6 by its /64 prefix.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn free_failures_then_doubling_blocks() {
        let l = FailureLimiter::default();
        let t = Instant::now();
        assert_eq!(l.failed(A, t), Failure::First);
        for _ in 2..FREE_FAILURES {
            assert_eq!(l.failed(A, t), Failure::Counted);
            assert_eq!(l.check(A, t), Ok(()));
        }
        let first = l.failed(A, t);
        assert_eq!(
            first,
            Failure::Blocked {
                failures: FREE_FAILURES,
                wait: Duration::from_secs(1)
            }
        );
        assert_eq!(l.check(A, t), Err(Duration::from_secs(1)));
        assert_eq!(l.check(B, t), Ok(()), "other addresses are not affected");
        let later = t + Duration::from_secs(1);
        assert_eq!(l.check(A, later), Ok(()));
        assert!(matches!(
            l.failed(A, later),
            Failure::Blocked { wait, .. } if wait == Duration::from_secs(2)
        ));
        let mut now = later;
        for _ in 0..20 {
            now += MAX_BLOCK;
            l.failed(A, now);
        }
        assert_eq!(l.check(A, now), Err(MAX_BLOCK));
    }

    #[test]
    fn success_and_time_forget() {
        let l = FailureLimiter::default();
        let t = Instant::now();
        for _ in 0..FREE_FAILURES {
            l.failed(A, t);
        }
        assert!(l.check(A, t).is_err());
        l.succeeded(A);
        assert_eq!(l.check(A, t), Ok(()));
        for _ in 0..FREE_FAILURES - 1 {
            l.failed(B, t);
        }
        // Long after: the count starts again.
        assert_eq!(l.failed(B, t + FORGET_AFTER), Failure::First);
    }

    #[test]
    fn ipv6_counts_by_prefix_and_mapped_ipv4_as_ipv4() {
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let two: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(key(one), key(two));
        assert_ne!(key(one), key(other));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(key(mapped), A);
    }

    #[test]
    fn a_full_table_shares_one_entry() {
        let l = FailureLimiter::default();
        let t = Instant::now();
        for i in 0..MAX_ENTRIES as u32 {
            l.failed(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), t);
        }
        let fresh = |i: u32| IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i));
        for i in 0..FREE_FAILURES {
            l.failed(fresh(i), t);
        }
        assert!(
            l.check(fresh(1000), t).is_err(),
            "the overflow entry blocks all untracked addresses"
        );
        assert_eq!(l.entries.lock().unwrap().len(), MAX_ENTRIES + 1);
    }
}
