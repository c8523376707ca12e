//! Endpoint addresses parsed through the origins they share. Subscribers of one service send
//! NotifyTo addresses that differ in their paths only (`http://sink.example/hooks/17`), and
//! parsing a URL's scheme and host is most of parsing it: the `url` crate runs every host
//! through IDNA before it tries it as an address (5.7k of herald's 93k instructions per Subscribe
//! on PostgreSQL, `callgrind`, BENCHMARKS.md thirty-third pass). So each thread keeps the last
//! few origins it parsed, and an address whose text starts with one of them takes that URL and
//! sets its path, which the `url` crate parses exactly as it parses the rest of a whole URL.

use std::cell::RefCell;

use url::Url;

/// Origins kept per thread.
const KEPT: usize = 8;
/// The longest origin kept (the text before the path).
const MAX_ORIGIN: usize = 256;

thread_local! {
    static ORIGINS: RefCell<Origins> = const { RefCell::new(Origins { kept: Vec::new(), next: 0 }) };
}

/// The origins one thread parsed last, each under the exact text it was parsed from.
struct Origins {
    kept: Vec<(Box<str>, Url)>,
    /// The entry replaced next once all are taken.
    next: usize,
}

impl Origins {
    fn find(&self, origin: &str) -> Option<&Url> {
        self.kept
            .iter()
            .find(|(text, _)| **text == *origin)
            .map(|(_, url)| url)
    }

    fn keep(&mut self, origin: &str, url: Url) {
        let entry = (Box::from(origin), url);
        if self.kept.len() < KEPT {
            self.kept.push(entry);
        } else {
            self.kept[self.next] = entry;
            self.next = (self.next + 1) % KEPT;
        }
    }
}

/// What `Url::parse(address)` returns, the same in every case.
pub fn parse(address: &str) -> Result<Url, url::ParseError> {
    let Some((origin, path)) = split(address) else {
        return Url::parse(address);
    };
    ORIGINS.with(|origins| {
        if let Some(known) = origins.borrow().find(origin) {
            let mut url = known.clone();
            url.set_path(path);
            return Ok(url);
        }
        let url = Url::parse(address)?;
        if let Ok(parsed) = Url::parse(origin) {
            origins.borrow_mut().keep(origin, parsed);
        }
        Ok(url)
    })
}

/// `http(s)://authority` and `/path`, for an address whose path `Url::set_path` reads as a
/// whole parse does: printable ASCII only (no spaces, tabs or newlines, which a whole parse
/// strips), no `?` or `#` (a query or fragment, which `set_path` would escape into the path),
/// no `\` (which a special scheme reads as `/`, ending the authority), and one authority that
/// ends at the first `/`.
fn split(address: &str) -> Option<(&str, &str)> {
    let scheme = if address.starts_with("http://") {
        7
    } else if address.starts_with("https://") {
        8
    } else {
        return None;
    };
    let plain = |byte: &u8| matches!(byte, 0x21..=0x7e) && !matches!(byte, b'\\' | b'?' | b'#');
    if !address.as_bytes().iter().all(plain) {
        return None;
    }
    let slash = address[scheme..].find('/')?;
    if slash == 0 || scheme + slash > MAX_ORIGIN {
        return None;
    }
    Some(address.split_at(scheme + slash))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Pieces an address is built from: the characters the URL rules treat specially (dots,
    /// percent signs, backslashes, `@`, `:`, brackets, a query, a fragment, spaces, tabs,
    /// non-ASCII), and whole origins.
    const PIECES: [&str; 34] = [
        "http://",
        "https://",
        "HTTP://",
        "http:/",
        "127.0.0.1",
        "[::1]",
        "sink.example",
        "Sink.EXAMPLE",
        "xn--bcher-kva.example",
        "bücher.example",
        ":8080",
        ":99999",
        ":0",
        "user:pw@",
        "@",
        "/",
        "//",
        "\\",
        ".",
        "..",
        "/./",
        "/../",
        "%2e",
        "%41",
        "%zz",
        "?q=1",
        "#f",
        " ",
        "\t",
        "é",
        "a",
        "hooks",
        "[",
        "~!$&'()*+,;=",
    ];

    fn address() -> impl Strategy<Value = String> {
        (
            proptest::sample::select(&PIECES[..4]),
            proptest::sample::select(&PIECES[4..15]),
            proptest::collection::vec(proptest::sample::select(&PIECES[..]), 0..8),
        )
            .prop_map(|(scheme, host, rest)| format!("{scheme}{host}{}", rest.concat()))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Parsed cold, then again with its origin kept, then after another address of the
        /// same origin: always what a whole parse gives.
        #[test]
        fn parses_every_address_as_a_whole_parse_does(first in address(), second in address()) {
            for address in [&first, &first, &second, &first, &second] {
                prop_assert_eq!(parse(address), Url::parse(address), "{}", address);
            }
        }
    }

    #[test]
    fn an_origin_parsed_once_serves_its_paths() {
        let first = parse("http://127.0.0.1:9/sink/1").unwrap();
        assert_eq!(first.as_str(), "http://127.0.0.1:9/sink/1");
        let kept = ORIGINS.with(|origins| origins.borrow().find("http://127.0.0.1:9").cloned());
        assert_eq!(
            kept.map(String::from).as_deref(),
            Some("http://127.0.0.1:9/")
        );
        let second = parse("http://127.0.0.1:9/sink/./2/../3").unwrap();
        assert_eq!(second.as_str(), "http://127.0.0.1:9/sink/3");
        assert_eq!(second.host_str(), Some("127.0.0.1"));
        assert_eq!(second.port(), Some(9));
        // Kept no more than KEPT, the oldest replaced first.
        for port in 0..KEPT + 3 {
            parse(&format!("http://10.0.0.1:{}/x", 1000 + port)).unwrap();
        }
        ORIGINS.with(|origins| assert_eq!(origins.borrow().kept.len(), KEPT));
    }

    #[test]
    fn addresses_a_path_cannot_be_set_on_are_parsed_whole() {
        for address in [
            "http://h/a?b",
            "http://h/a#b",
            "http://h/a\\b",
            "http://h/a b",
            "http://h/é",
            "http:///h/a",
            "http://h",
            "mailto:a@h/b",
        ] {
            assert_eq!(split(address), None, "{address}");
        }
        assert_eq!(split("https://u@h:1/a/b"), Some(("https://u@h:1", "/a/b")));
    }
}
