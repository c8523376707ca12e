//! Sinks that demand authentication, on loopback: HTTP Basic (the header checked), HTTP Digest
//! (a real challenge with a fresh nonce, the answer verified per RFC 7616 with SHA-256 or MD5,
//! and a nonce answered before accepted again with a higher count), and the same over TLS that
//! requires a client certificate from a test CA (certificates made with the `openssl` CLI).

use std::collections::{HashMap, HashSet};
use std::path::{Path as FsPath, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use md5::{Digest as _, Md5};

/// What a path demands.
#[derive(Debug, Clone)]
pub enum Demand {
    /// Nothing: 202 to all (records what came).
    Nothing,
    /// `Authorization: Basic` with these credentials.
    Basic(&'static str, &'static str),
    /// HTTP Digest with these credentials, challenging with this algorithm (`SHA-256`, `MD5`).
    Digest(&'static str, &'static str, &'static str),
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub authorization: Option<String>,
    pub status: u16,
    /// The digest nonce count it carried.
    pub nc: Option<u32>,
    pub body: String,
}

#[derive(Default)]
struct Paths {
    demands: HashMap<String, Demand>,
    seen: HashMap<String, Vec<Seen>>,
    /// Nonces issued, with the highest count accepted.
    nonces: HashMap<String, u32>,
}

/// The sink.
#[derive(Clone)]
pub struct AuthSink {
    pub base: String,
    paths: Arc<Mutex<Paths>>,
}

pub const REALM: &str = "sink@herald.test";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hash(algorithm: &str, text: &str) -> String {
    match algorithm {
        "MD5" => hex(&Md5::digest(text.as_bytes())),
        _ => hex(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()).as_ref()),
    }
}

/// The parameters of a `Digest` Authorization (quoted values unquoted).
fn digest_parameters(value: &str) -> HashMap<String, String> {
    let mut parameters = HashMap::new();
    let mut rest = value.trim();
    while !rest.is_empty() {
        let Some((name, after)) = rest.split_once('=') else {
            break;
        };
        let name = name.trim().trim_start_matches(',').trim().to_owned();
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((at, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = at + 1;
                        break;
                    }
                    _ => value.push(c),
                }
            }
            (value, &quoted[end..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        parameters.insert(name, value);
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    parameters
}

impl Paths {
    /// Whether a Digest answer is right: a nonce this sink issued, a count above any accepted
    /// for it, the request's URI, and the response RFC 7616 computes.
    fn digest_ok(
        &mut self,
        user: &str,
        password: &str,
        algorithm: &str,
        uri: &str,
        value: &str,
    ) -> (bool, Option<u32>) {
        let Some(answer) = value.strip_prefix("Digest ") else {
            return (false, None);
        };
        let p = digest_parameters(answer);
        let get = |name: &str| p.get(name).cloned().unwrap_or_default();
        let nc = u32::from_str_radix(&get("nc"), 16).ok();
        let Some(last) = self.nonces.get(&get("nonce")).copied() else {
            return (false, nc);
        };
        let Some(count) = nc.filter(|n| *n > last) else {
            return (false, nc);
        };
        let ha1 = hash(algorithm, &format!("{user}:{REALM}:{password}"));
        let ha2 = hash(algorithm, &format!("POST:{uri}"));
        let expected = hash(
            algorithm,
            &format!(
                "{ha1}:{}:{}:{}:auth:{ha2}",
                get("nonce"),
                get("nc"),
                get("cnonce")
            ),
        );
        let ok = get("username") == user
            && get("realm") == REALM
            && get("uri") == uri
            && get("qop") == "auth"
            && get("algorithm") == algorithm
            && get("opaque") == "opaque-value"
            && get("response") == expected;
        if ok {
            self.nonces.insert(get("nonce"), count);
        }
        (ok, nc)
    }
}

async fn receive(
    State(paths): State<Arc<Mutex<Paths>>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut paths = paths.lock().unwrap();
    let demand = paths.demands.get(&path).cloned().unwrap_or(Demand::Nothing);
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let uri = format!("/{path}");
    let (accepted, nc, challenge) = match &demand {
        Demand::Nothing => (true, None, None),
        Demand::Basic(user, password) => {
            let expected = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            );
            (
                authorization.as_deref() == Some(expected.as_str()),
                None,
                Some(format!("Basic realm=\"{REALM}\"")),
            )
        }
        Demand::Digest(user, password, algorithm) => {
            let (ok, nc) = match &authorization {
                Some(value) => paths.digest_ok(user, password, algorithm, &uri, value),
                None => (false, None),
            };
            let nonce = hex(uuid::Uuid::new_v4().as_bytes());
            if !ok {
                paths.nonces.insert(nonce.clone(), 0);
            }
            (
                ok,
                nc,
                Some(format!(
                    "Digest realm=\"{REALM}\", qop=\"auth, auth-int\", algorithm={algorithm}, nonce=\"{nonce}\", opaque=\"opaque-value\""
                )),
            )
        }
    };
    let status = if accepted { 202 } else { 401 };
    paths.seen.entry(path).or_default().push(Seen {
        authorization,
        status,
        nc,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    match (accepted, challenge) {
        (true, _) | (false, None) => StatusCode::from_u16(status).unwrap().into_response(),
        (false, Some(challenge)) => {
            (StatusCode::UNAUTHORIZED, [("www-authenticate", challenge)]).into_response()
        }
    }
}

impl AuthSink {
    fn router(paths: Arc<Mutex<Paths>>) -> Router {
        Router::new()
            .route("/{path}", post(receive))
            .with_state(paths)
    }

    /// An http sink on loopback.
    pub async fn start() -> AuthSink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let paths = Arc::new(Mutex::new(Paths::default()));
        let router = AuthSink::router(paths.clone());
        tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        AuthSink {
            base: format!("http://{address}"),
            paths,
        }
    }

    /// An https sink on loopback that takes only clients with a certificate from `pki`'s CA.
    pub async fn start_tls(pki: &Pki) -> AuthSink {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(pki.file("ca.pem")).unwrap())
            .unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .unwrap();
        let certificates = CertificateDer::pem_file_iter(pki.file("server.pem"))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(pki.file("server.key")).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(certificates, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let paths = Arc::new(Mutex::new(Paths::default()));
        let router = AuthSink::router(paths.clone());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let router = router.clone();
                tokio::spawn(async move {
                    // A client without a certificate from the CA fails here.
                    let Ok(stream) = acceptor.accept(socket).await else {
                        return;
                    };
                    let service = hyper_util::service::TowerToHyperService::new(router);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        AuthSink {
            base: format!("https://{address}"),
            paths,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    pub fn demand(&self, path: &str, demand: Demand) {
        self.paths
            .lock()
            .unwrap()
            .demands
            .insert(path.to_owned(), demand);
    }

    pub fn seen(&self, path: &str) -> Vec<Seen> {
        self.paths
            .lock()
            .unwrap()
            .seen
            .get(path)
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until `path` accepted `count` requests; returns all it saw.
    pub async fn wait_accepted(&self, path: &str, count: usize, within: Duration) -> Vec<Seen> {
        let deadline = Instant::now() + within;
        loop {
            let seen = self.seen(path);
            if seen.iter().filter(|s| s.status == 202).count() >= count {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "{path}: {count} accepted wanted, saw {seen:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A test CA, a server certificate for 127.0.0.1 and a client certificate it signed, made with
/// the `openssl` command.
pub struct Pki {
    dir: tempfile::TempDir,
}

fn openssl(dir: &FsPath, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command (needed to make the test certificates)");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        ca.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=herald test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(path, &ca);
        for (name, usage, san) in [
            ("server", "serverAuth", "subjectAltName=IP:127.0.0.1"),
            ("client", "clientAuth", "subjectAltName=DNS:herald.test"),
        ] {
            let key = format!("{name}.key");
            let csr = format!("{name}.csr");
            let pem = format!("{name}.pem");
            let ext = format!("{name}.ext");
            std::fs::write(
                path.join(&ext),
                format!("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage={usage}\n{san}\n"),
            )
            .unwrap();
            let mut request = vec!["req"];
            request.extend(ec);
            request.extend(["-keyout", &key, "-out", &csr, "-subj", "/CN=herald test"]);
            openssl(path, &request);
            openssl(
                path,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    &pem,
                    "-days",
                    "2",
                    "-extfile",
                    &ext,
                ],
            );
        }
        Pki { dir }
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Proof that the TLS sink insists: a client that trusts the CA but has no certificate
    /// gets no answer.
    pub async fn refused_without_certificate(&self, url: &str) -> bool {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca = std::fs::read(self.file("ca.pem")).unwrap();
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
            .build()
            .unwrap();
        client.post(url).body("<x/>").send().await.is_err()
    }
}

/// Nonces the sink issued, for tests that count challenges.
pub fn challenges(seen: &[Seen]) -> usize {
    seen.iter().filter(|s| s.status == 401).count()
}

/// The distinct digest nonces answered, for tests of nonce reuse.
pub fn nonces_answered(seen: &[Seen]) -> HashSet<String> {
    seen.iter()
        .filter_map(|s| s.authorization.as_deref())
        .filter_map(|a| a.strip_prefix("Digest "))
        .filter_map(|a| digest_parameters(a).get("nonce").cloned())
        .collect()
}
