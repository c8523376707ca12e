//! What the rest of the machine does over a stretch of work: how idle its cores are, and how
//! much CPU the PostgreSQL server spends. Read beside herald's own CPU, they show where a rate's
//! limit lies when herald does not keep the cores busy.

use std::time::{Duration, Instant};

use anyhow::Context;

use crate::process::CpuMeter;

/// One process's CPU over a stretch of work, beside the cores' idle share and, on PostgreSQL,
/// the server's CPU.
pub struct Meters {
    process: CpuMeter,
    cores: Cores,
    server: Option<ServerCpu>,
}

impl Meters {
    /// Starts measuring process `pid`, and the PostgreSQL server too when `postgres`.
    pub fn start(pid: u32, postgres: bool) -> anyhow::Result<Meters> {
        Ok(Meters {
            process: CpuMeter::start(pid)?,
            cores: Cores::start()?,
            server: postgres.then(ServerCpu::start),
        })
    }

    /// `{name}52 µs CPU each, the PostgreSQL server 30 µs; cores 12% idle, 4% waiting on the
    /// disk`, for `count` units of work done since the start.
    pub fn describe(&self, name: &str, count: u64) -> anyhow::Result<String> {
        Ok(self.read(count)?.describe(name))
    }

    /// The figures since the start, for `count` units of work done.
    pub fn read(&self, count: u64) -> anyhow::Result<Reading> {
        Ok(Reading {
            process: self.process.micros_each(count)?,
            server: self.server.as_ref().map(|server| server.micros_each(count)),
            cores: self.cores.shares()?,
        })
    }
}

/// The window [`settle`] watches for quiet.
const SETTLE_WINDOW: Duration = Duration::from_millis(200);
/// At most this much CPU in a window counts as quiet: one clock tick.
const QUIET_MICROS: f64 = 10_000.0;
/// [`settle`] waits no longer than this.
const SETTLE_AT_MOST: Duration = Duration::from_secs(3);

/// Waits until process `pid` (and with `postgres` the PostgreSQL server) has gone quiet: at
/// most one clock tick of CPU in a 200 ms window, for at most 3 s. Work a run leaves behind it
/// (cursors saved, pages pruned, a checkpoint) then does not slow the baseline that follows.
/// How long it waited, and whether it went quiet (or the wait ran out).
pub async fn settle(pid: u32, postgres: bool) -> anyhow::Result<(Duration, bool)> {
    let started = Instant::now();
    loop {
        let process = CpuMeter::start(pid)?;
        let server = postgres.then(ServerCpu::start);
        tokio::time::sleep(SETTLE_WINDOW).await;
        let quiet = process.micros_each(1)? <= QUIET_MICROS
            && server.is_none_or(|server| server.micros_each(1) <= QUIET_MICROS);
        if quiet || started.elapsed() >= SETTLE_AT_MOST {
            return Ok((started.elapsed(), quiet));
        }
    }
}

/// What [`Meters`] read over a stretch of work.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    /// The process's CPU per unit of work, in microseconds.
    pub process: f64,
    /// The PostgreSQL server's CPU per unit of work, in microseconds, when measured.
    pub server: Option<f64>,
    cores: CoreShares,
}

impl Reading {
    /// This reading's cores with the CPU counted up to `later`: the work a stretch of work
    /// left behind belongs to it, the idle time after it does not.
    pub fn with_cpu_of(self, later: Reading) -> Reading {
        Reading {
            process: later.process,
            server: later.server,
            cores: self.cores,
        }
    }

    /// The cores' idle share, in percent.
    pub fn idle_percent(&self) -> f64 {
        self.cores.idle * 100.0
    }

    /// `{name}52 µs CPU each, …`, as [`Meters::describe`].
    pub fn describe(&self, name: &str) -> String {
        let server = match self.server {
            Some(server) => format!(", the PostgreSQL server {server:.0} µs"),
            None => String::new(),
        };
        format!(
            "{name}{:.0} µs CPU each{server}; {}",
            self.process, self.cores
        )
    }
}

/// The machine's cores over a stretch of work, from the first line of `/proc/stat`.
struct Cores {
    started: CoreTicks,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CoreTicks {
    total: u64,
    idle: u64,
    iowait: u64,
}

impl Cores {
    fn start() -> anyhow::Result<Cores> {
        Ok(Cores {
            started: core_ticks()?,
        })
    }

    /// The shares of the cores' time since the start spent idle and waiting on the disk.
    fn shares(&self) -> anyhow::Result<CoreShares> {
        let now = core_ticks()?;
        let total = now.total.saturating_sub(self.started.total).max(1) as f64;
        Ok(CoreShares {
            idle: now.idle.saturating_sub(self.started.idle) as f64 / total,
            iowait: now.iowait.saturating_sub(self.started.iowait) as f64 / total,
        })
    }
}

/// How the cores spent a stretch of work, as shares of their time.
#[derive(Debug, Clone, Copy)]
struct CoreShares {
    idle: f64,
    iowait: f64,
}

impl std::fmt::Display for CoreShares {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cores {:.0}% idle, {:.0}% waiting on the disk",
            self.idle * 100.0,
            self.iowait * 100.0
        )
    }
}

fn core_ticks() -> anyhow::Result<CoreTicks> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    parse_core_ticks(&stat).ok_or_else(|| anyhow::anyhow!("no cpu line in /proc/stat"))
}

/// `cpu  user nice system idle iowait irq softirq steal …`: the total counts every field up to
/// steal (guest time is already inside user and nice).
fn parse_core_ticks(stat: &str) -> Option<CoreTicks> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    (fields.len() >= 5).then(|| CoreTicks {
        total: fields.iter().sum(),
        idle: fields[3],
        iowait: fields[4],
    })
}

/// The CPU the PostgreSQL server's processes (every process named `postgres`) spend over a
/// stretch of work. A backend that exits during it takes its time along, so this is a floor.
struct ServerCpu {
    started: Duration,
}

impl ServerCpu {
    fn start() -> ServerCpu {
        ServerCpu {
            started: postgres_cpu(),
        }
    }

    /// Microseconds of the server's CPU per unit of work since the start: `count` units done.
    fn micros_each(&self, count: u64) -> f64 {
        let spent = postgres_cpu().saturating_sub(self.started);
        spent.as_secs_f64() * 1e6 / count.max(1) as f64
    }
}

fn postgres_cpu() -> Duration {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Duration::ZERO;
    };
    entries
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("stat")).ok())
        .filter(|stat| command_name(stat) == Some("postgres"))
        .filter_map(|stat| crate::process::parse_cpu_time(&stat))
        .sum()
}

/// Field 2 of `/proc/PID/stat`: the command name between the first '(' and the last ')'.
fn command_name(stat: &str) -> Option<&str> {
    Some(&stat[stat.find('(')? + 1..stat.rfind(')')?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_ticks_total_every_field_up_to_steal() {
        let stat = "cpu  100 5 50 800 40 3 2 0 7 0\ncpu0 50 2 25 400 20 1 1 0 0 0\n";
        assert_eq!(
            parse_core_ticks(stat),
            Some(CoreTicks {
                total: 1000,
                idle: 800,
                iowait: 40
            })
        );
        assert_eq!(parse_core_ticks("cpu0 1 2 3 4 5\n"), None);
        assert_eq!(parse_core_ticks("cpu  1 2 x 4 5\n"), None);
    }

    #[test]
    fn shares_read_as_percentages() {
        let shares = CoreShares {
            idle: 0.123,
            iowait: 0.04,
        };
        assert_eq!(shares.to_string(), "cores 12% idle, 4% waiting on the disk");
    }

    #[test]
    fn command_names_may_hold_parentheses() {
        assert_eq!(command_name("77 (postgres) S 1 77"), Some("postgres"));
        assert_eq!(command_name("78 (a (b) c) S 1"), Some("a (b) c"));
        assert_eq!(command_name("79 broken"), None);
    }
}
