//! HTTP Digest access authentication, the client's half (RFC 7616, and RFC 2069's form without
//! `qop` that older sinks still send): reading a sink's `WWW-Authenticate` challenges and
//! computing the `Authorization` that answers one. MD5, SHA-256 and SHA-512/256, each also in
//! its `-sess` form; `qop` `auth` (preferred) or `auth-int`; `userhash`.

use md5::{Digest as _, Md5};

/// A digest algorithm's hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    /// MD5 (RFC 2617's default, still the most common).
    Md5,
    /// SHA-256.
    Sha256,
    /// SHA-512/256.
    Sha512_256,
}

impl Hash {
    fn hex(self, data: &[u8]) -> String {
        let digest: Vec<u8> = match self {
            Hash::Md5 => Md5::digest(data).to_vec(),
            Hash::Sha256 => ring::digest::digest(&ring::digest::SHA256, data)
                .as_ref()
                .to_vec(),
            Hash::Sha512_256 => ring::digest::digest(&ring::digest::SHA512_256, data)
                .as_ref()
                .to_vec(),
        };
        digest.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    fn name(self) -> &'static str {
        match self {
            Hash::Md5 => "MD5",
            Hash::Sha256 => "SHA-256",
            Hash::Sha512_256 => "SHA-512-256",
        }
    }
}

/// Quality of protection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qop {
    /// The request line is protected.
    Auth,
    /// The body too.
    AuthInt,
}

/// A Digest challenge herald can answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `realm`.
    pub realm: String,
    /// `nonce`.
    pub nonce: String,
    /// `opaque`, returned as it came.
    pub opaque: Option<String>,
    /// The algorithm's hash.
    pub hash: Hash,
    /// A `-sess` algorithm.
    pub session: bool,
    /// The `qop` chosen from those offered; `None` when none was (RFC 2069).
    pub qop: Option<Qop>,
    /// `userhash=true`: the user name is sent hashed.
    pub userhash: bool,
    /// `stale=true`: the nonce expired, the credentials were right.
    pub stale: bool,
}

/// The comma-separated items of a header value, commas inside quoted strings kept.
fn items(value: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in value.chars() {
        match c {
            _ if escaped => {
                escaped = false;
                current.push(c);
            }
            '\\' if quoted => {
                escaped = true;
                current.push(c);
            }
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ',' if !quoted => items.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    items.push(current);
    items
        .into_iter()
        .map(|item| item.trim().to_owned())
        .filter(|item| !item.is_empty())
        .collect()
}

/// `name=value` (the value unquoted), if `item` is one.
fn parameter(item: &str) -> Option<(String, String)> {
    let (name, value) = item.split_once('=')?;
    let name = name.trim();
    if name.is_empty() || name.contains(char::is_whitespace) {
        return None;
    }
    let value = value.trim();
    let value = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => {
            let mut unquoted = String::with_capacity(inner.len());
            let mut escaped = false;
            for c in inner.chars() {
                if escaped || c != '\\' {
                    unquoted.push(c);
                    escaped = false;
                } else {
                    escaped = true;
                }
            }
            unquoted
        }
        None => value.to_owned(),
    };
    Some((name.to_ascii_lowercase(), value))
}

/// Every challenge in `WWW-Authenticate` values: its scheme and parameters, in order.
fn challenges(values: &[String]) -> Vec<(String, Vec<(String, String)>)> {
    let mut challenges: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for value in values {
        for item in items(value) {
            let (first, rest) = match item.split_once(char::is_whitespace) {
                Some((first, rest)) => (first, rest.trim()),
                None => (item.as_str(), ""),
            };
            if first.contains('=') {
                if let (Some(challenge), Some(parameter)) =
                    (challenges.last_mut(), parameter(&item))
                {
                    challenge.1.push(parameter);
                }
                continue;
            }
            let mut parameters = Vec::new();
            parameters.extend(parameter(rest));
            challenges.push((first.to_owned(), parameters));
        }
    }
    challenges
}

/// The first Digest challenge in `values` herald can answer (RFC 7616 §3.7: the server lists
/// its preferred first).
pub fn first_answerable(values: &[String]) -> Option<Challenge> {
    challenges(values)
        .into_iter()
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("Digest"))
        .find_map(|(_, parameters)| {
            let get = |name: &str| {
                parameters
                    .iter()
                    .find(|(key, _)| key == name)
                    .map(|(_, value)| value.clone())
            };
            let algorithm = get("algorithm").unwrap_or_else(|| "MD5".into());
            // `get`, not indexing: a name may end in a multi-byte character.
            let tail = algorithm
                .len()
                .checked_sub(5)
                .and_then(|at| Some((at, algorithm.get(at..)?)));
            let (name, session) = match tail {
                Some((at, tail)) if tail.eq_ignore_ascii_case("-sess") => (&algorithm[..at], true),
                _ => (algorithm.as_str(), false),
            };
            let hash = [Hash::Md5, Hash::Sha256, Hash::Sha512_256]
                .into_iter()
                .find(|hash| hash.name().eq_ignore_ascii_case(name))?;
            let qop = match get("qop") {
                None => None,
                Some(offered) => {
                    let offered: Vec<String> = offered
                        .split(',')
                        .map(|qop| qop.trim().to_ascii_lowercase())
                        .collect();
                    if offered.iter().any(|qop| qop == "auth") {
                        Some(Qop::Auth)
                    } else if offered.iter().any(|qop| qop == "auth-int") {
                        Some(Qop::AuthInt)
                    } else {
                        return None;
                    }
                }
            };
            let flag = |name: &str| get(name).is_some_and(|v| v.eq_ignore_ascii_case("true"));
            Some(Challenge {
                realm: get("realm").unwrap_or_default(),
                nonce: get("nonce")?,
                opaque: get("opaque"),
                hash,
                session,
                qop,
                userhash: flag("userhash"),
                stale: flag("stale"),
            })
        })
}

/// What a request is, for its digest.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `POST`.
    pub method: &'a str,
    /// The request target: the URL's path and query.
    pub uri: &'a str,
    /// The body (for `auth-int`).
    pub body: &'a [u8],
}

fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The `Authorization` value answering `challenge` for `request` as `username`, with nonce
/// count `nc` and client nonce `cnonce`.
pub fn authorization(
    challenge: &Challenge,
    (username, password): (&str, &str),
    request: Request<'_>,
    nc: u32,
    cnonce: &str,
) -> String {
    let h = |text: &str| challenge.hash.hex(text.as_bytes());
    let realm = &challenge.realm;
    let nonce = &challenge.nonce;
    let nc = format!("{nc:08x}");
    let mut ha1 = h(&format!("{username}:{realm}:{password}"));
    if challenge.session {
        ha1 = h(&format!("{ha1}:{nonce}:{cnonce}"));
    }
    let ha2 = match challenge.qop {
        Some(Qop::AuthInt) => h(&format!(
            "{}:{}:{}",
            request.method,
            request.uri,
            challenge.hash.hex(request.body)
        )),
        _ => h(&format!("{}:{}", request.method, request.uri)),
    };
    let qop = challenge.qop.map(|qop| match qop {
        Qop::Auth => "auth",
        Qop::AuthInt => "auth-int",
    });
    let response = match qop {
        Some(qop) => h(&format!("{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")),
        None => h(&format!("{ha1}:{nonce}:{ha2}")),
    };
    let user = if challenge.userhash {
        h(&format!("{username}:{realm}"))
    } else {
        username.to_owned()
    };
    let algorithm = format!(
        "{}{}",
        challenge.hash.name(),
        if challenge.session { "-sess" } else { "" }
    );
    let mut header = format!(
        "Digest username={}, realm={}, uri={}, algorithm={algorithm}, nonce={}",
        quoted(&user),
        quoted(realm),
        quoted(request.uri),
        quoted(nonce)
    );
    if let Some(qop) = qop {
        header.push_str(&format!(", nc={nc}, cnonce={}, qop={qop}", quoted(cnonce)));
    }
    header.push_str(&format!(", response={}", quoted(&response)));
    if let Some(opaque) = &challenge.opaque {
        header.push_str(&format!(", opaque={}", quoted(opaque)));
    }
    if challenge.userhash {
        header.push_str(", userhash=true");
    }
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response_of(header: &str) -> String {
        let (_, rest) = header.split_once("response=\"").unwrap();
        rest.split('"').next().unwrap().to_owned()
    }

    /// RFC 7616 §3.9.1: the same request answered with SHA-256 and with MD5.
    #[test]
    fn rfc_7616_examples() {
        let header = [
            r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#.to_owned(),
            r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=MD5, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#.to_owned(),
        ];
        let request = Request {
            method: "GET",
            uri: "/dir/index.html",
            body: b"",
        };
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        let credentials = ("Mufasa", "Circle of Life");
        let sha = first_answerable(&header[..1]).unwrap();
        assert_eq!(sha.hash, Hash::Sha256);
        assert_eq!(sha.qop, Some(Qop::Auth));
        let answer = authorization(&sha, credentials, request, 1, cnonce);
        assert_eq!(
            response_of(&answer),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        assert!(answer.contains("nc=00000001"), "{answer}");
        assert!(answer.contains("opaque=\"FQhe/"), "{answer}");
        let md5 = first_answerable(&header[1..]).unwrap();
        assert_eq!(
            response_of(&authorization(&md5, credentials, request, 1, cnonce)),
            "8ca523f5e9506fed4657c9700eebdbec"
        );
        // Both offered, in one header or two: the first is taken.
        assert_eq!(first_answerable(&header).unwrap().hash, Hash::Sha256);
        assert_eq!(
            first_answerable(&[format!("Basic realm=\"x\", {}", header[1])])
                .unwrap()
                .hash,
            Hash::Md5
        );
    }

    /// RFC 2617 §3.5, and RFC 2069's form without qop.
    #[test]
    fn rfc_2617_example_and_no_qop() {
        let challenge = first_answerable(&[r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#.to_owned()]).unwrap();
        let request = Request {
            method: "GET",
            uri: "/dir/index.html",
            body: b"",
        };
        let answer = authorization(
            &challenge,
            ("Mufasa", "Circle Of Life"),
            request,
            1,
            "0a4f113b",
        );
        assert_eq!(response_of(&answer), "6629fae49393a05397450978507c4ef1");
        let old = first_answerable(&[r#"Digest realm="r", nonce="n""#.to_owned()]).unwrap();
        assert_eq!(old.qop, None);
        let answer = authorization(&old, ("u", "p"), request, 1, "c");
        assert!(!answer.contains("qop="), "{answer}");
        let ha1 = Hash::Md5.hex(b"u:r:p");
        let ha2 = Hash::Md5.hex(b"GET:/dir/index.html");
        assert_eq!(
            response_of(&answer),
            Hash::Md5.hex(format!("{ha1}:n:{ha2}").as_bytes())
        );
    }

    #[test]
    fn what_cannot_be_answered_is_skipped() {
        for header in [
            r#"Basic realm="x""#,
            r#"Digest realm="x", nonce="n", algorithm=SHA-1"#,
            r#"Digest realm="x", nonce="n", qop="auth-conf""#,
            r#"Digest realm="x""#,
            "Negotiate abc==",
        ] {
            assert_eq!(first_answerable(&[header.to_owned()]), None, "{header}");
        }
        let session = first_answerable(&[
            r#"Digest realm="x", nonce="n", algorithm=SHA-512-256-sess, qop=auth-int, userhash=true, stale=TRUE"#.to_owned(),
        ])
        .unwrap();
        assert_eq!(
            (
                session.hash,
                session.session,
                session.qop,
                session.userhash,
                session.stale
            ),
            (Hash::Sha512_256, true, Some(Qop::AuthInt), true, true)
        );
        let answer = authorization(
            &session,
            ("a\"b", "p"),
            Request {
                method: "POST",
                uri: "/x?y=1",
                body: b"<e/>",
            },
            2,
            "c",
        );
        assert!(answer.contains("userhash=true") && answer.contains("nc=00000002"));
        assert!(
            !answer.contains("a\"b") && !answer.contains("a\\\"b"),
            "hashed: {answer}"
        );
    }
}
