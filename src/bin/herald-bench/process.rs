//! herald as a child process: started on an ephemeral loopback port with a scratch data
//! directory, ready when it prints `herald listening on http://ADDR`, stopped with SIGTERM.
//! Also scratch directories and fresh PostgreSQL databases, each removed when dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::sync::oneshot;

/// A directory removed (with everything in it) when dropped, unless kept.
pub struct ScratchDir {
    path: PathBuf,
    keep: bool,
}

impl ScratchDir {
    pub fn new(base: &Path, label: &str, keep: bool) -> anyhow::Result<ScratchDir> {
        let path = base.join(format!(
            "herald-bench-{}-{label}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(ScratchDir { path, keep })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("   kept {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// How to start herald.
#[derive(Debug, Clone, Default)]
pub struct Launch {
    /// A TOML configuration file's text (`--config`), for source settings flags cannot set.
    pub config: Option<String>,
    /// `--database URL` (scenario 7).
    pub database: Option<String>,
    /// Longest wait for the ready line.
    pub ready_timeout: Option<Duration>,
    /// `--node-id NAME` (otherwise the name herald keeps in the data directory on PostgreSQL).
    pub node_id: Option<String>,
}

/// A running herald.
pub struct Herald {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// From spawning the process to its ready line.
    pub ready_after: Duration,
    log: PathBuf,
}

impl Herald {
    /// Starts `binary serve` on `dir/data` (the data directory survives a restart in the same
    /// `dir`), logging to `dir/herald.log`.
    pub async fn start(binary: &Path, dir: &Path, launch: &Launch) -> anyhow::Result<Herald> {
        let data_dir = dir.join("data");
        let log = dir.join("herald.log");
        let mut command = Command::new(binary);
        command
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--allowed-networks")
            .arg("127.0.0.0/8")
            .arg("--log-level")
            .arg("warn");
        // The default source takes as many subscriptions and as large events as a scenario
        // makes (the built-in 10,000 would refuse the footprint's million, 256 KiB scenario
        // 8's benign events); a scenario's own file replaces this.
        let config = launch.config.as_deref().unwrap_or(
            "[sources.default]\nmax_subscriptions = 100000000\nmax_event_bytes = 1048576\n",
        );
        let path = dir.join("herald.toml");
        std::fs::write(&path, config).with_context(|| format!("writing {}", path.display()))?;
        command.arg("--config").arg(path);
        if let Some(url) = &launch.database {
            command.arg("--database").arg(url);
        }
        if let Some(name) = &launch.node_id {
            command.arg("--node-id").arg(name);
        }
        // The user's own HERALD_* settings would change what is measured.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("HERALD_") {
                command.env_remove(key);
            }
        }
        command.stdin(Stdio::null());
        let timeout = launch.ready_timeout.unwrap_or(Duration::from_secs(60));
        let (child, base, ready_after) = spawn_until_ready(command, "herald listening on ", &log)?
            .wait(timeout)
            .await?;
        Ok(Herald {
            child,
            base,
            ready_after,
            log,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory (VmRSS) in bytes.
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        rss_bytes(self.pid())
    }

    /// The last lines herald logged.
    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }

    /// Whether herald is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Fails if herald has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if self.running() {
            Ok(())
        } else {
            bail!("herald exited; its log ends:\n{}", self.log_tail())
        }
    }

    /// Stops herald gracefully (SIGTERM) and waits for it to exit, up to `timeout`; then kills.
    pub async fn terminate(mut self, timeout: Duration) -> anyhow::Result<Duration> {
        let started = Instant::now();
        if !self.running() {
            bail!(
                "herald had already exited; its log ends:\n{}",
                self.log_tail()
            );
        }
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .context("running kill -TERM")?;
        anyhow::ensure!(status.success(), "kill -TERM {} failed", self.pid());
        while started.elapsed() < timeout {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(started.elapsed()),
                Ok(Some(status)) => bail!(
                    "herald exited with {status} after SIGTERM; its log ends:\n{}",
                    self.log_tail()
                ),
                Ok(None) => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(err) => return Err(err).context("waiting for herald"),
            }
        }
        bail!("herald did not stop within {timeout:?} of SIGTERM")
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        if self.running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A child process started, whose stdout is being read for its ready line.
pub struct Starting {
    child: Child,
    ready: oneshot::Receiver<(String, Instant)>,
    spawned: Instant,
    log: PathBuf,
}

/// Spawns `command` with stdout read by a thread (to its end, so the child never blocks
/// writing) and stderr appended to `log`; the line starting with `prefix` says it is ready.
pub fn spawn_until_ready(
    mut command: Command,
    prefix: &'static str,
    log: &Path,
) -> anyhow::Result<Starting> {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    command.stdout(Stdio::piped()).stderr(Stdio::from(log_file));
    let spawned = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {:?}", command.get_program()))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("the child's stdout is not piped"))?;
    let (ready_tx, ready) = oneshot::channel::<(String, Instant)>();
    std::thread::spawn(move || {
        let mut ready = Some(ready_tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(address) = line.trim().strip_prefix(prefix)
                && let Some(tx) = ready.take()
            {
                let _ = tx.send((address.to_owned(), Instant::now()));
            }
        }
    });
    Ok(Starting {
        child,
        ready,
        spawned,
        log: log.to_owned(),
    })
}

impl Starting {
    /// Waits for the ready line: the child, the address it printed, and the time it took.
    pub async fn wait(mut self, timeout: Duration) -> anyhow::Result<(Child, String, Duration)> {
        match tokio::time::timeout(timeout, &mut self.ready).await {
            Ok(Ok((address, at))) => Ok((self.child, address, at.duration_since(self.spawned))),
            Ok(Err(_)) => {
                let status = self.child.wait().ok();
                bail!(
                    "process {} exited ({}) before it was ready; its log ends:\n{}",
                    self.child.id(),
                    status.map_or("unknown status".into(), |s| s.to_string()),
                    tail(&self.log)
                )
            }
            Err(_) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!(
                    "not ready within {timeout:?}; its log ends:\n{}",
                    tail(&self.log)
                )
            }
        }
    }
}

/// The last lines of a log file.
pub fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Resident memory (VmRSS) of a process in bytes.
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    parse_vm_rss(&status).ok_or_else(|| anyhow::anyhow!("no VmRSS in /proc/{pid}/status"))
}

/// CPU time (user and system) a process has used so far, from `/proc/PID/stat` (`self` for
/// this one), in the kernel's clock ticks of 1/100 s.
pub fn cpu_time(pid: &str) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    parse_cpu_time(&stat).ok_or_else(|| anyhow::anyhow!("no CPU times in /proc/{pid}/stat"))
}

/// The CPU time a process spends over a stretch of work, read from [`cpu_time`] at its start
/// and end.
pub struct CpuMeter {
    pid: String,
    started: Duration,
}

impl CpuMeter {
    pub fn start(pid: u32) -> anyhow::Result<CpuMeter> {
        let pid = pid.to_string();
        let started = cpu_time(&pid)?;
        Ok(CpuMeter { pid, started })
    }

    /// Microseconds of CPU per unit of work since the start: `count` units done.
    pub fn micros_each(&self, count: u64) -> anyhow::Result<f64> {
        let spent = cpu_time(&self.pid)?.saturating_sub(self.started);
        Ok(spent.as_secs_f64() * 1e6 / count.max(1) as f64)
    }
}

pub fn parse_cpu_time(stat: &str) -> Option<Duration> {
    // The command name (field 2) may hold spaces; fields 14 and 15 count after its ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((user + system) * 10))
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// A database created for one herald start on the server of `--database`, dropped afterwards.
pub struct FreshDatabase {
    server: String,
    name: String,
    /// The URL herald is given.
    pub url: String,
}

impl FreshDatabase {
    /// Creates `herald_bench_<pid>_<random>` with psql on the server `url` points to.
    pub fn create(url: &str) -> anyhow::Result<FreshDatabase> {
        let name = format!(
            "herald_bench_{}_{:08x}",
            std::process::id(),
            fastrand::u32(..)
        );
        psql(url, &format!("CREATE DATABASE {name}"))?;
        Ok(FreshDatabase {
            server: url.to_owned(),
            url: with_database(url, &name),
            name,
        })
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        if let Err(err) = psql(
            &self.server,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        ) {
            eprintln!("could not drop database {}: {err:#}", self.name);
        }
    }
}

fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    let output = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .stdin(Stdio::null())
        .output()
        .context(
            "running psql (install the PostgreSQL client, e.g. apt-get install postgresql-client)",
        )?;
    if !output.status.success() {
        bail!(
            "psql -c '{sql}' failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// The URL with its database (path) replaced by `name`; the query string is kept.
fn with_database(url: &str, name: &str) -> String {
    let (main, query) = match url.split_once('?') {
        Some((main, query)) => (main, Some(query)),
        None => (url, None),
    };
    let authority_start = main.find("://").map_or(0, |i| i + 3);
    let base = match main[authority_start..].find('/') {
        Some(slash) => &main[..authority_start + slash],
        None => main,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_get_the_fresh_name() {
        assert_eq!(
            with_database("postgres://u:p@127.0.0.1:5432/postgres", "x"),
            "postgres://u:p@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://127.0.0.1", "x"),
            "postgres://127.0.0.1/x"
        );
        assert_eq!(
            with_database("postgresql://h/db?sslmode=disable", "x"),
            "postgresql://h/x?sslmode=disable"
        );
    }

    #[test]
    fn vm_rss_is_read_in_bytes() {
        let status = "Name:\therald\nVmPeak:\t  9000 kB\nVmRSS:\t    1234 kB\n";
        assert_eq!(parse_vm_rss(status), Some(1234 * 1024));
        assert_eq!(parse_vm_rss("Name: x"), None);
    }

    #[test]
    fn cpu_time_is_user_plus_system() {
        let stat = "4242 (herald (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0";
        assert_eq!(parse_cpu_time(stat), Some(Duration::from_millis(3250)));
        assert_eq!(parse_cpu_time("4242 (herald) S 1"), None);
    }
}
