//! Memory the process gives back while it is idle.
//!
//! Most of Twofold's resident set is its own code, not data: argument parsing, migrations, the
//! GraphQL schema builder and TLS set-up run once, and the kernel maps code in 64 KiB chunks
//! around every page touched, so the pages stay mapped long after they ran. [`release`] unmaps
//! the executable's read-only pages (code and constants) and hands free heap memory back to the
//! system; the pages stay in the page cache, and the code that the next request runs maps itself
//! back on first use (minor faults, well under a millisecond for a whole request). [`spawn_idle_trim`]
//! does that once after start-up and again whenever the server has been idle for a while.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Requests started since the process began (counted by the HTTP server).
static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// Counts a request (for the idle trim).
pub fn request_started() {
    REQUESTS.fetch_add(1, Ordering::Relaxed);
}

/// Calls [`release`] once `idle` after start-up and then each time no request has started for
/// `idle` after some did, after `on_idle` (which drops what the process keeps only to go faster
/// under load, so that [`release`] can hand its memory back). Linux with glibc only; elsewhere
/// the task ends at once.
pub fn spawn_idle_trim(idle: Duration, on_idle: impl Fn() + Send + 'static) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if !cfg!(all(target_os = "linux", target_env = "gnu")) {
            return;
        }
        let mut tick = tokio::time::interval(idle);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let (mut seen, mut trimmed) = (u64::MAX, u64::MAX);
        loop {
            tick.tick().await;
            let now = REQUESTS.load(Ordering::Relaxed);
            if now == seen && now != trimmed {
                on_idle();
                let released = release();
                tracing::debug!(released, "idle: read-only pages unmapped, heap trimmed");
                trimmed = now;
            }
            seen = now;
        }
    })
}

/// Unmaps the pages of the executable's read-only mappings (code and constants) and trims the
/// heap (Linux with glibc; elsewhere nothing). Returns the bytes unmapped.
///
/// A read-only private mapping that was never written to holds exactly the file's bytes, so
/// dropping its pages loses nothing: the next access reads the page back from the page cache. A
/// mapping with any page written to it (the loader's relocated constants, a debugger's
/// breakpoints) is left alone.
pub fn release() -> usize {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let mut released = 0;
        for (start, len) in clean_own_mappings() {
            // SAFETY: `start..start + len` is a read-only private mapping of this executable with
            // no page written to it (see `clean_own_mappings`): MADV_DONTNEED only drops its page
            // table entries, which the kernel refills from the unchanged file on the next access.
            if unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED) } == 0 {
                released += len;
            }
        }
        // SAFETY: malloc_trim only returns free memory of glibc's heaps to the system.
        unsafe { libc::malloc_trim(0) };
        released
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    0
}

/// The read-only (`r--p`, `r-xp`) mappings of the file that holds this function's code, none of
/// whose pages was written to (no `Anonymous` pages), from `/proc/self/smaps`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn clean_own_mappings() -> Vec<(usize, usize)> {
    struct Mapping<'a> {
        start: usize,
        end: usize,
        perms: &'a str,
        path: &'a str,
        written: bool,
    }
    let here = release as fn() -> usize as usize;
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else { return Vec::new() };
    let mut mappings: Vec<Mapping<'_>> = Vec::new();
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else { continue };
        if first.ends_with(':') {
            // A field of the mapping above: pages copied on write count as `Anonymous`.
            if first == "Anonymous:"
                && let Some(m) = mappings.last_mut()
            {
                m.written |= fields.next() != Some("0");
            }
            continue;
        }
        let Some((start, end)) = first.split_once('-') else { continue };
        let (Ok(start), Ok(end)) = (usize::from_str_radix(start, 16), usize::from_str_radix(end, 16)) else {
            continue;
        };
        let perms = fields.next().unwrap_or("");
        let path = fields.nth(3).unwrap_or("");
        mappings.push(Mapping { start, end, perms, path, written: false });
    }
    let Some(own) = mappings.iter().find(|m| (m.start..m.end).contains(&here) && m.perms == "r-xp") else {
        return Vec::new();
    };
    let own = own.path;
    mappings
        .iter()
        .filter(|m| !own.is_empty() && m.path == own && matches!(m.perms, "r-xp" | "r--p") && !m.written)
        .map(|m| (m.start, m.end - m.start))
        .collect()
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    #[test]
    fn the_program_runs_on_after_its_pages_are_released() {
        let released = super::release();
        assert!(released > 0, "the executable's code mapping was found and released");
        // Code and constants come back from the file on their next use.
        let squares: Vec<u64> = (0..1000u64).map(|i| i * i).collect();
        assert_eq!(squares.iter().sum::<u64>(), 332_833_500);
        assert_eq!(format!("{:?}", Some("again")), "Some(\"again\")");
        assert!(super::release() > 0);
    }
}
