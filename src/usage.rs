//! CPU time spent, for benchmarks that say what bounds them: Redis' own
//! (`INFO cpu`) and this process' (`/proc/self/stat`).

use std::time::Duration;

/// A field of an `INFO` reply (`name:value` lines) as a number; 0 when absent.
pub fn info_field(info: &str, name: &str) -> f64 {
    info.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok()).unwrap_or(0.0)
}

/// The CPU time (user and system) a Redis server has spent so far.
///
/// # Panics
/// When the server does not answer `INFO cpu`.
pub async fn redis_cpu(connection: &mut redis::aio::MultiplexedConnection) -> Duration {
    let info: String =
        redis::cmd("INFO").arg("cpu").query_async(connection).await.expect("the server answers INFO cpu");
    Duration::from_secs_f64(info_field(&info, "used_cpu_user") + info_field(&info, "used_cpu_sys"))
}

/// The CPU time (user and system, all threads) this process has spent so
/// far, in clock ticks of 10 ms; zero where `/proc/self/stat` cannot be read.
pub fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (in parentheses, which may hold spaces).
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    // utime and stime: fields 14 and 15 of the line, 0-based 11 and 12 after the name.
    let ticks: u64 = [11, 12].iter().filter_map(|&i| fields.get(i)?.parse::<u64>().ok()).sum();
    Duration::from_millis(ticks * 10)
}
