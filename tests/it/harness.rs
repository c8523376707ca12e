//! Test harness: a real herald on an ephemeral loopback port with a store of its own (a
//! temporary data directory, or a fresh PostgreSQL schema when `HERALD_TEST_DATABASE` names a
//! database), a real HTTP client, and helpers to build and read SOAP messages.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald::app::Application;
use herald::config::Config;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const SOAP11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
pub const SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";
pub const WSA2003: &str = "http://schemas.xmlsoap.org/ws/2003/03/addressing";
pub const WSA2004: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing";
pub const WSA2005: &str = "http://www.w3.org/2005/08/addressing";
pub const WSE01: &str = "http://schemas.xmlsoap.org/ws/2004/01/eventing";
pub const WSE08: &str = "http://schemas.xmlsoap.org/ws/2004/08/eventing";
pub const WSE11: &str = "http://www.w3.org/2011/03/ws-evt";
pub const HERALD: &str = "urn:herald:eventing";

/// A WS-Eventing version with the WS-Addressing version a client pairs it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    pub name: &'static str,
    pub wse: &'static str,
    pub wsa: &'static str,
}

pub const JAN2004: Version = Version {
    name: "2004/01",
    wse: WSE01,
    wsa: WSA2003,
};
pub const AUG2004: Version = Version {
    name: "2004/08",
    wse: WSE08,
    wsa: WSA2004,
};
/// DPWS 1.1: the 2004/08 eventing namespace over WS-Addressing 1.0.
pub const AUG2004_DPWS: Version = Version {
    name: "2004/08+wsa1.0",
    wse: WSE08,
    wsa: WSA2005,
};
pub const W3C2011: Version = Version {
    name: "2011",
    wse: WSE11,
    wsa: WSA2005,
};
pub const ALL_VERSIONS: [Version; 4] = [JAN2004, AUG2004, AUG2004_DPWS, W3C2011];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Soap {
    V11,
    V12,
}

impl Soap {
    pub fn ns(self) -> &'static str {
        match self {
            Soap::V11 => SOAP11,
            Soap::V12 => SOAP12,
        }
    }
}

/// An HTTP client for tests (rustls needs its crypto provider chosen once per process).
/// A client that lets go of idle connections before herald does (it closes a connection idle
/// for its header timeout, 10 s by default): a request never goes out on one herald is closing.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .pool_idle_timeout(std::time::Duration::from_secs(5))
        .build()
        .expect("an HTTP client")
}

/// The PostgreSQL database the suite runs against instead of SQLite, when set.
pub const DATABASE_VARIABLE: &str = "HERALD_TEST_DATABASE";

/// Where one test's herald keeps its state: a temporary data directory, and when
/// `HERALD_TEST_DATABASE` is set, a fresh schema of its own in that database. Several herald
/// instances (a restart, or several nodes) started on one `TestStore` share its state.
pub struct TestStore {
    dir: tempfile::TempDir,
    database: Option<String>,
}

impl TestStore {
    pub async fn new() -> TestStore {
        let dir = tempfile::tempdir().expect("temporary directory");
        let database = match std::env::var(DATABASE_VARIABLE) {
            Ok(url) if !url.trim().is_empty() => Some(fresh_schema(url.trim()).await),
            _ => None,
        };
        TestStore { dir, database }
    }

    /// The embedded store in a temporary directory, whatever `HERALD_TEST_DATABASE` says.
    pub fn embedded() -> TestStore {
        TestStore {
            dir: tempfile::tempdir().expect("temporary directory"),
            database: None,
        }
    }

    /// Whether this store is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.database.is_some()
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// herald's store itself, opened in this process (for tests of the store's own rules).
    pub async fn open(&self) -> std::sync::Arc<dyn herald::store::Store> {
        match &self.database {
            Some(url) => std::sync::Arc::new(
                herald::store::PostgresStore::open(url)
                    .await
                    .expect("open PostgreSQL"),
            ),
            None => std::sync::Arc::new(
                herald::store::SqliteStore::open(self.dir.path())
                    .await
                    .expect("open SQLite"),
            ),
        }
    }

    /// Points a configuration at this store.
    pub fn apply(&self, config: &mut Config) {
        config.data_dir = self.dir.path().to_path_buf();
        config.database = self.database.clone();
    }

    /// Runs SQL statements against this store's database behind herald's back: to break it on
    /// purpose, or to look at what it holds.
    pub async fn execute(&self, statements: &[&str]) {
        for statement in statements {
            let statement = sqlx::AssertSqlSafe(statement.to_string());
            match self.connect().await {
                Connection::Sqlite(mut connection) => sqlx::query(statement)
                    .execute(&mut connection)
                    .await
                    .map(|_| ()),
                Connection::Postgres(mut connection) => sqlx::query(statement)
                    .execute(&mut connection)
                    .await
                    .map(|_| ()),
            }
            .unwrap_or_else(|err| panic!("cannot run a statement: {err}"));
        }
    }

    /// The first column of each row `query` returns, as integers.
    pub async fn integers(&self, query: &str) -> Vec<i64> {
        use sqlx::Row;
        let query = sqlx::AssertSqlSafe(query.to_string());
        match self.connect().await {
            Connection::Sqlite(mut connection) => sqlx::query(query)
                .fetch_all(&mut connection)
                .await
                .map(|rows| rows.iter().map(|row| row.get::<i64, _>(0)).collect()),
            Connection::Postgres(mut connection) => sqlx::query(query)
                .fetch_all(&mut connection)
                .await
                .map(|rows| rows.iter().map(|row| row.get::<i64, _>(0)).collect()),
        }
        .unwrap_or_else(|err| panic!("query failed: {err}"))
    }

    async fn connect(&self) -> Connection {
        use sqlx::{ConnectOptions, Connection as _};
        match &self.database {
            Some(url) => Connection::Postgres(
                sqlx::PgConnection::connect(url)
                    .await
                    .expect("connect to the test database"),
            ),
            None => Connection::Sqlite(
                sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(self.dir.path().join("herald.db"))
                    .busy_timeout(Duration::from_secs(10))
                    .connect()
                    .await
                    .expect("open the test's SQLite store"),
            ),
        }
    }

    /// The PostgreSQL URL (with this test's schema), when the store is PostgreSQL.
    pub fn database_url(&self) -> Option<&str> {
        self.database.as_deref()
    }

    /// The `herald serve` arguments that point the binary at this store.
    pub fn args(&self) -> Vec<OsString> {
        let mut args = vec!["--data-dir".into(), self.dir.path().into()];
        if let Some(url) = &self.database {
            args.push("--database".into());
            args.push(url.into());
        }
        args
    }
}

/// A connection to a test's store.
enum Connection {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

/// Creates a schema no other test uses in the database at `url`, and returns a URL whose
/// connections use it.
async fn fresh_schema(url: &str) -> String {
    use sqlx::Connection;
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut connection = sqlx::PgConnection::connect(url)
        .await
        .unwrap_or_else(|err| panic!("{DATABASE_VARIABLE}={url}: cannot connect: {err}"));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut connection)
        .await
        .expect("create a schema");
    let _ = connection.close().await;
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-c%20search_path%3D{schema}")
}

/// A herald process (the real binary) on an ephemeral port.
pub struct Process {
    pub child: Child,
    pub base: String,
    /// What it has written to stderr so far (its log), line by line.
    log: Arc<Mutex<Vec<String>>>,
}

impl Process {
    pub fn start(store: &TestStore) -> Process {
        Process::start_with(store, &[])
    }

    /// `herald serve` on `store`, on an ephemeral port, delivering to loopback.
    pub fn serve(store: &TestStore) -> Command {
        let mut command = Process::command();
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--log-level", "warn"])
            .args(["--allowed-networks", "127.0.0.0/8"])
            .args(store.args());
        command
    }

    /// Starts the binary on `store` with extra `herald serve` arguments.
    pub fn start_with(store: &TestStore, extra: &[&str]) -> Process {
        let mut command = Process::serve(store);
        command.args(extra);
        if !extra.contains(&"--lease-ttl-ms") {
            // On PostgreSQL a process started under another name takes the old one's
            // subscriptions over once the old lease lapses (one given no name is the same node
            // as before: it keeps its name in the data directory).
            command.args(["--lease-ttl-ms", "2000"]);
        }
        Process::spawn(command)
    }

    /// The binary, with no `HERALD_*` variable of this environment.
    pub fn command() -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("HERALD_") {
                command.env_remove(name);
            }
        }
        command
    }

    /// Runs `command` and waits for its ready line; its stderr is kept (see [`Process::log`])
    /// and passed on to the test's.
    pub fn spawn(mut command: Command) -> Process {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("herald starts");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                lines.lock().unwrap().push(line);
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("ready line");
        let base = match line.trim().strip_prefix("herald listening on ") {
            Some(base) => base.to_owned(),
            None => {
                let status = child.wait().expect("herald exits");
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "herald did not start ({status}); stdout {line:?}, stderr:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        Process { child, base, log }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The lines of its log so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// A client view of this process, for the harness helpers.
    pub fn client(&self) -> TestServer {
        TestServer::remote(&self.base)
    }

    /// SIGTERM: a graceful stop, which the caller waits for as it needs.
    pub fn terminate(&self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(status.expect("kill").success(), "kill -TERM {pid}");
    }

    /// kill -9: no chance to flush anything.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A herald running in this process.
pub struct TestServer {
    pub base: String,
    pub client: reqwest::Client,

    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    _store: Option<TestStore>,
}

/// Built-in defaults, an ephemeral port, and the test's store.
pub fn test_config(store: &TestStore) -> Config {
    let mut config = Config::defaults();
    config.listen = "127.0.0.1:0".into();
    store.apply(&mut config);
    // Sinks run on loopback: allow-listed explicitly, as an operator would.
    config.allowed_networks = vec!["127.0.0.0/8".parse().unwrap()];
    config
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_with(|_| {}).await
    }

    /// Starts herald with the test configuration adjusted by `adjust`.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let store = TestStore::new().await;
        let mut server = TestServer::start_in(&store, adjust).await;
        server._store = Some(store);
        server
    }

    /// Starts herald on an existing store (which the caller keeps alive).
    pub async fn start_in(store: &TestStore, adjust: impl FnOnce(&mut Config)) -> TestServer {
        let mut config = test_config(store);
        adjust(&mut config);
        let application = Application::build(config).await.expect("herald starts");
        let address = application.local_addr().expect("bound address");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(application.run_until_stopped(async {
            let _ = rx.await;
        }));
        TestServer {
            base: format!("http://{address}"),
            client: http_client(),

            shutdown: Some(tx),
            task: Some(task),
            _store: None,
        }
    }

    /// Stops herald gracefully and waits until it has closed its store.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server ran");
        }
    }

    /// A client for a herald started elsewhere (such as a child process).
    pub fn remote(base: &str) -> TestServer {
        TestServer {
            base: base.to_owned(),
            client: http_client(),
            shutdown: None,
            task: None,
            _store: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs a SOAP message: SOAP 1.1 with `SOAPAction`, SOAP 1.2 with the `action` parameter.
    pub async fn post_soap(
        &self,
        url: &str,
        soap: Soap,
        action: Option<&str>,
        body: String,
    ) -> Reply {
        post_soap(&self.client, url, soap, action, body).await
    }

    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// Waits (up to `within`) until this node delivers `expected` subscriptions of a source,
    /// and returns the last count seen. On PostgreSQL a restarted process is a new node that
    /// takes the old one's subscriptions over only when the old lease lapses.
    pub async fn wait_active(&self, source: &str, expected: u64, within: Duration) -> u64 {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let active = self.active(source).await;
            if active == expected || tokio::time::Instant::now() >= deadline {
                return active;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The `herald_active_subscriptions` gauge for a source.
    pub async fn active(&self, source: &str) -> u64 {
        let needle = format!("herald_active_subscriptions{{source=\"{source}\"}} ");
        let metrics = self.metrics().await;
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&needle))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("no gauge for {source} in:\n{metrics}"))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub async fn post_soap(
    client: &reqwest::Client,
    url: &str,
    soap: Soap,
    action: Option<&str>,
    body: String,
) -> Reply {
    let mut request = client.post(url);
    request = match (soap, action) {
        (Soap::V11, Some(action)) => request
            .header("Content-Type", "text/xml; charset=utf-8")
            .header("SOAPAction", format!("\"{action}\"")),
        (Soap::V11, None) => request.header("Content-Type", "text/xml; charset=utf-8"),
        (Soap::V12, Some(action)) => request.header(
            "Content-Type",
            format!("application/soap+xml; charset=utf-8; action=\"{action}\""),
        ),
        (Soap::V12, None) => request.header("Content-Type", "application/soap+xml; charset=utf-8"),
    };
    let response = request.body(body).send().await.expect("request sent");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = response.text().await.expect("response body");
    Reply {
        status,
        content_type,
        text,
    }
}

/// A message to send: envelope namespace, addressing headers, extra headers and body.
pub struct Message {
    pub soap: Soap,
    pub version: Version,
    pub action: String,
    pub message_id: Option<String>,
    pub reply_to: Option<String>,
    pub headers: Vec<String>,
    pub body: String,
}

impl Message {
    pub fn new(soap: Soap, version: Version, operation: &str, body: impl Into<String>) -> Message {
        Message {
            soap,
            version,
            action: format!("{}/{operation}", version.wse),
            message_id: Some(format!("urn:uuid:{}", uuid::Uuid::new_v4())),
            reply_to: None,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    pub fn header(mut self, header: impl Into<String>) -> Message {
        self.headers.push(header.into());
        self
    }

    pub fn envelope(&self) -> String {
        let mut headers = format!("<wsa:Action>{}</wsa:Action>", self.action);
        if let Some(id) = &self.message_id {
            headers.push_str(&format!("<wsa:MessageID>{id}</wsa:MessageID>"));
        }
        if let Some(reply_to) = &self.reply_to {
            headers.push_str(&format!(
                "<wsa:ReplyTo><wsa:Address>{reply_to}</wsa:Address></wsa:ReplyTo>"
            ));
        }
        for header in &self.headers {
            headers.push_str(header);
        }
        format!(
            r#"<?xml version="1.0" encoding="utf-8"?>
<s:Envelope xmlns:s="{}" xmlns:wsa="{}" xmlns:wse="{}">
  <s:Header>{headers}</s:Header>
  <s:Body>{}</s:Body>
</s:Envelope>"#,
            self.soap.ns(),
            self.version.wsa,
            self.version.wse,
            self.body
        )
    }

    pub async fn send(&self, server: &TestServer, url: &str) -> Reply {
        server
            .post_soap(url, self.soap, Some(&self.action), self.envelope())
            .await
    }
}

/// The body of a Subscribe in `version`, delivering to `notify_to`, with `extra` children.
pub fn subscribe_body(version: Version, notify_to: &str, extra: &str) -> String {
    let notify = format!("<wse:NotifyTo><wsa:Address>{notify_to}</wsa:Address></wse:NotifyTo>");
    if version.wse == WSE01 {
        format!("<wse:Subscribe>{notify}{extra}</wse:Subscribe>")
    } else {
        format!("<wse:Subscribe><wse:Delivery>{notify}</wse:Delivery>{extra}</wse:Subscribe>")
    }
}

pub const SINK: &str = "http://127.0.0.1:9/sink";

/// A reply as received.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub text: String,
}

/// What a fault says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultInfo {
    /// `Sender`/`Receiver`/`VersionMismatch`/`MustUnderstand` (1.2) or the 1.1 faultcode's
    /// local name (`Client`, `Server`, or the subcode's local name).
    pub code: String,
    /// Subcode as (namespace, local name); for SOAP 1.1 the faultcode QName when not a SOAP one.
    pub subcode: Option<(String, String)>,
    pub reason: String,
    pub action: Option<String>,
}

impl Reply {
    pub fn doc(&self) -> roxmltree::Document<'_> {
        roxmltree::Document::parse(&self.text)
            .unwrap_or_else(|err| panic!("reply is not XML ({err}): {}", self.text))
    }

    /// Trimmed text of the first element with this name.
    pub fn text_of(&self, ns: &str, local: &str) -> Option<String> {
        let doc = self.doc();
        doc.descendants()
            .find(|n| {
                n.is_element()
                    && n.tag_name().name() == local
                    && n.tag_name().namespace() == Some(ns)
            })
            .map(|n| {
                n.descendants()
                    .filter(|d| d.is_text())
                    .map(|d| d.text().unwrap_or(""))
                    .collect::<String>()
                    .trim()
                    .to_owned()
            })
    }

    /// Trimmed text of every element with this name, in document order.
    pub fn texts_of(&self, ns: &str, local: &str) -> Vec<String> {
        self.doc()
            .descendants()
            .filter(|n| n.is_element() && n.has_tag_name((ns, local)))
            .map(|n| n.text().unwrap_or("").trim().to_owned())
            .collect()
    }

    pub fn count(&self, ns: &str, local: &str) -> usize {
        self.doc()
            .descendants()
            .filter(|n| {
                n.is_element()
                    && n.tag_name().name() == local
                    && n.tag_name().namespace() == Some(ns)
            })
            .count()
    }

    /// The first element child of Body as (namespace, local name), if any.
    pub fn body_element(&self) -> Option<(String, String)> {
        let doc = self.doc();
        let body = doc
            .root_element()
            .children()
            .find(|n| n.is_element() && n.tag_name().name() == "Body")?;
        let first = body.children().find(|n| n.is_element())?;
        Some((
            first.tag_name().namespace().unwrap_or("").to_owned(),
            first.tag_name().name().to_owned(),
        ))
    }

    /// The `wsa:Action` header in any addressing version.
    pub fn action(&self) -> Option<String> {
        [WSA2003, WSA2004, WSA2005]
            .iter()
            .find_map(|ns| self.text_of(ns, "Action"))
    }

    pub fn fault(&self) -> FaultInfo {
        let doc = self.doc();
        let fault = doc
            .descendants()
            .find(|n| n.is_element() && n.tag_name().name() == "Fault")
            .unwrap_or_else(|| panic!("not a fault: {}", self.text));
        let resolve = |node: roxmltree::Node<'_, '_>, text: &str| -> (String, String) {
            let text = text.trim();
            match text.split_once(':') {
                Some((prefix, local)) => (
                    node.lookup_namespace_uri(Some(prefix))
                        .unwrap_or("")
                        .to_owned(),
                    local.to_owned(),
                ),
                None => (String::new(), text.to_owned()),
            }
        };
        let text = |n: roxmltree::Node<'_, '_>| n.text().unwrap_or("").trim().to_owned();
        let action = self.action();
        if fault.tag_name().namespace() == Some(SOAP12) {
            let code = fault
                .children()
                .find(|n| n.has_tag_name((SOAP12, "Code")))
                .expect("Code");
            let value = code
                .children()
                .find(|n| n.has_tag_name((SOAP12, "Value")))
                .expect("Value");
            let subcode = code
                .children()
                .find(|n| n.has_tag_name((SOAP12, "Subcode")))
                .and_then(|s| s.children().find(|n| n.has_tag_name((SOAP12, "Value"))))
                .map(|v| resolve(v, &text(v)));
            let reason = fault
                .descendants()
                .find(|n| n.has_tag_name((SOAP12, "Text")))
                .map(text)
                .unwrap_or_default();
            FaultInfo {
                code: resolve(value, &text(value)).1,
                subcode,
                reason,
                action,
            }
        } else {
            let faultcode = fault
                .children()
                .find(|n| n.has_tag_name("faultcode"))
                .expect("faultcode");
            let (ns, local) = resolve(faultcode, &text(faultcode));
            let reason = fault
                .children()
                .find(|n| n.has_tag_name("faultstring"))
                .map(text)
                .unwrap_or_default();
            let subcode = (ns != SOAP11).then(|| (ns.clone(), local.clone()));
            FaultInfo {
                code: local,
                subcode,
                reason,
                action,
            }
        }
    }

    /// Asserts a fault with this subcode, and the SOAP HTTP status for its code.
    #[track_caller]
    pub fn assert_fault(&self, soap: Soap, subcode: (&str, &str), receiver: bool) -> FaultInfo {
        let fault = self.fault();
        assert_eq!(
            fault
                .subcode
                .as_ref()
                .map(|(ns, local)| (ns.as_str(), local.as_str())),
            Some(subcode),
            "wrong subcode in {}",
            self.text
        );
        let expected_status = match (soap, receiver) {
            (Soap::V12, false) => 400,
            _ => 500,
        };
        assert_eq!(
            self.status, expected_status,
            "HTTP status for {}",
            self.text
        );
        if soap == Soap::V12 {
            assert_eq!(fault.code, if receiver { "Receiver" } else { "Sender" });
            assert!(self.content_type.starts_with("application/soap+xml"));
        } else {
            assert!(self.content_type.starts_with("text/xml"));
        }
        fault
    }
}

/// What a client keeps from a SubscribeResponse to manage the subscription.
#[derive(Debug, Clone)]
pub struct Managed {
    pub version: Version,
    pub manager_url: String,
    pub id: String,
    pub expires: String,
}

impl Managed {
    /// Reads a SubscribeResponse in `version`.
    pub fn from_response(server: &TestServer, version: Version, reply: &Reply) -> Managed {
        assert_eq!(reply.status, 200, "subscribe failed: {}", reply.text);
        assert_eq!(
            reply.body_element(),
            Some((version.wse.to_owned(), "SubscribeResponse".to_owned()))
        );
        if version.wse == WSE01 {
            return Managed {
                version,
                manager_url: server.url("/eventing/default"),
                id: reply.text_of(WSE01, "Id").expect("wse:Id"),
                expires: reply.text_of(WSE01, "Expires").expect("wse:Expires"),
            };
        }
        let manager_url = reply
            .text_of(version.wsa, "Address")
            .expect("manager address");
        let (id, expires) = if version.wse == WSE08 {
            (
                reply.text_of(WSE08, "Identifier").expect("wse:Identifier"),
                reply.text_of(WSE08, "Expires").expect("wse:Expires"),
            )
        } else {
            (
                reply
                    .text_of(HERALD, "SubscriptionId")
                    .expect("herald SubscriptionId"),
                reply
                    .text_of(WSE11, "GrantedExpires")
                    .expect("wse:GrantedExpires"),
            )
        };
        Managed {
            version,
            manager_url,
            id,
            expires,
        }
    }

    /// A manager request (Renew, GetStatus, Unsubscribe) for this subscription.
    pub fn request(&self, soap: Soap, operation: &str, inner: &str) -> Message {
        let version = self.version;
        if version.wse == WSE01 {
            let body = format!(
                "<wse:{operation}><wse:Id>{}</wse:Id>{inner}</wse:{operation}>",
                self.id
            );
            return Message::new(soap, version, operation, body);
        }
        let body = format!("<wse:{operation}>{inner}</wse:{operation}>");
        let header = if version.wse == WSE08 {
            format!("<wse:Identifier>{}</wse:Identifier>", self.id)
        } else {
            format!(
                "<h:SubscriptionId xmlns:h=\"{HERALD}\" wsa:IsReferenceParameter=\"true\">{}</h:SubscriptionId>",
                self.id
            )
        };
        Message::new(soap, version, operation, body).header(header)
    }
}

/// Subscribes to `source` in `version` with `extra` children and returns the managed handle.
pub async fn subscribe(
    server: &TestServer,
    soap: Soap,
    version: Version,
    source: &str,
    extra: &str,
) -> Managed {
    let reply = Message::new(
        soap,
        version,
        "Subscribe",
        subscribe_body(version, SINK, extra),
    )
    .send(server, &server.url(&format!("/eventing/{source}")))
    .await;
    let mut managed = Managed::from_response(server, version, &reply);
    if version.wse == WSE01 {
        managed.manager_url = server.url(&format!("/eventing/{source}"));
    }
    managed
}

/// `url` with its scheme, host and port replaced by `base`.
pub fn rebase(url: &str, base: &str) -> String {
    let path = url.find("/eventing").map_or("", |at| &url[at..]);
    format!("{base}{path}")
}

/// Seconds in a `PTnS` / `PTn.mmmS` duration.
pub fn seconds(duration: &str) -> f64 {
    duration
        .strip_prefix("PT")
        .and_then(|rest| rest.strip_suffix('S'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a PTnS duration: {duration}"))
}
