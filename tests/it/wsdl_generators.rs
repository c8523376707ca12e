//! More real WSDL consumers against the WSDLs herald serves (zeep is in `wsdl.rs`):
//! - node-soap builds a client from each WSDL and drives Subscribe → GetStatus → Renew →
//!   Unsubscribe through it (`tests/wsdl/node/client.js`) on the SOAP 1.1 and the SOAP 1.2 ports,
//!   checked against herald's JSON API like zeep's sessions;
//! - gSOAP's wsdl2h and soapcpp2 generate C++ from each WSDL with the eventing elements
//!   qualified (the known trap: unqualified `Delivery`/`Expires`), and a small C++ client built
//!   on the 2011 code subscribes over SOAP 1.1 and 1.2.
//!
//! Each skips loudly when its tool is missing, and fails instead when `HERALD_REQUIRE_TOOLS=1`.

use std::path::Path;
use std::process::{Command, Output};

use crate::harness::*;
use crate::sink::Sink;
use crate::wsdl::{WSDLS, assert_session, get, tool_available};

const NODE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/wsdl/node");
const GSOAP_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/wsdl/gsoap");
/// gSOAP's own headers for the schemas it knows (WS-Addressing, SOAP 1.2), which wsdl2h's
/// output `#import`s.
const GSOAP_IMPORT: &str = "/usr/share/gsoap/import";

/// The eventing namespace of each `?wsdl` form, in `WSDLS`' order.
const EVENTING_NS: [&str; 3] = [WSE11, WSE08, WSE01];

fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|output| output.status.success())
}

/// Runs `command` off the async runtime; fails the test with its output unless it succeeded.
async fn run(mut command: Command, what: String) -> Output {
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .unwrap_or_else(|err| panic!("{what}: {err}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_node_soap_builds_from_each_wsdl_subscribes_renews_and_unsubscribes() {
    let installed = succeeds("node", &["--version"])
        && Path::new(NODE_DIR).join("node_modules/soap").is_dir()
        && Path::new(NODE_DIR)
            .join("node_modules/@xmldom/xmldom")
            .is_dir();
    if !tool_available(
        installed,
        "node-soap",
        "Node.js 20 and `npm ci` in tests/wsdl/node",
    ) {
        return;
    }
    let server = TestServer::start().await;
    let sink = Sink::start().await;
    let source_url = server.url("/eventing/default");
    let mut ends = 0;
    for (query, version, addressing) in WSDLS {
        for soap in ["11", "12"] {
            let mut command = Command::new("node");
            command.current_dir(NODE_DIR).args([
                "client.js",
                &format!("{source_url}{query}"),
                "--soap",
                soap,
                "--notify-to",
                &sink.url("notify"),
                "--end-to",
                &sink.url("end"),
            ]);
            let output = run(command, format!("node-soap client, {query} SOAP {soap}")).await;
            let steps: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
                .lines()
                .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
                .collect();
            assert_session(
                &server,
                &sink,
                &steps,
                (query, version, addressing),
                soap,
                &mut ends,
            )
            .await;
        }
    }
    assert_eq!(server.active("default").await, 0);
}

/// The prefix wsdl2h gave `namespace` in `out.h`, from its `//gsoap P schema namespace: NS`
/// line, and the `elementForm` it recorded for that schema.
fn gsoap_schema(out_h: &str, namespace: &str) -> (String, String) {
    let directive = |line: &str, key: &str| -> Option<(String, String)> {
        let mut words = line.strip_prefix("//gsoap ")?.split_whitespace();
        let prefix = words.next()?;
        (words.next()? == "schema" && words.next()? == key)
            .then(|| (prefix.to_owned(), words.next().unwrap_or("").to_owned()))
    };
    let prefix = out_h
        .lines()
        .filter_map(|line| directive(line, "namespace:"))
        .find(|(_, value)| value == namespace)
        .map(|(prefix, _)| prefix)
        .unwrap_or_else(|| panic!("out.h declares no schema for {namespace}"));
    let form = out_h
        .lines()
        .filter_map(|line| directive(line, "elementForm:"))
        .find(|(p, _)| *p == prefix)
        .map(|(_, form)| form)
        .unwrap_or_default();
    (prefix, form)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gsoap_generates_qualified_code_from_each_wsdl_and_its_client_subscribes() {
    let installed = succeeds("wsdl2h", &["-V"])
        && succeeds("soapcpp2", &["-V"])
        && succeeds("g++", &["--version"])
        && Path::new("/usr/include/stdsoap2.h").is_file()
        && Path::new(GSOAP_IMPORT).join("wsa5.h").is_file();
    let how = "apt-get install gsoap libgsoap-dev g++";
    if !tool_available(installed, "gSOAP (wsdl2h, soapcpp2, stdsoap2.h)", how) {
        return;
    }
    let server = TestServer::start().await;
    let sink = Sink::start().await;
    let source_url = server.url("/eventing/default");
    let work = tempfile::tempdir().expect("temp dir");
    for ((query, version, _), namespace) in WSDLS.into_iter().zip(EVENTING_NS) {
        let dir = work.path().join(version.replace('/', "-"));
        std::fs::create_dir(&dir).expect("mkdir");
        // wsdl2h fetches the WSDL and the schemas it imports from herald itself.
        let mut wsdl2h = Command::new("wsdl2h");
        wsdl2h
            .current_dir(&dir)
            .args(["-o", "out.h", &format!("{source_url}{query}")]);
        run(wsdl2h, format!("wsdl2h {query}")).await;
        let mut soapcpp2 = Command::new("soapcpp2");
        soapcpp2
            .current_dir(&dir)
            .args(["-C", "-L", "-x", &format!("-I{GSOAP_IMPORT}"), "out.h"]);
        run(soapcpp2, format!("soapcpp2 {query}")).await;

        // The eventing schema is recorded as qualified, and the generated serializers write
        // the Subscribe's parts with the eventing prefix: never a bare <Delivery>/<Expires>.
        let out_h = std::fs::read_to_string(dir.join("out.h")).expect("out.h");
        let (prefix, form) = gsoap_schema(&out_h, namespace);
        assert_eq!(form, "qualified", "{query}: {prefix} elementForm");
        let soap_c = std::fs::read_to_string(dir.join("soapC.cpp")).expect("soapC.cpp");
        let parts: &[&str] = if version == "2004/01" {
            &["Subscribe", "NotifyTo", "Expires"]
        } else {
            &["Subscribe", "Delivery", "NotifyTo", "Expires"]
        };
        for part in parts {
            assert!(
                soap_c.contains(&format!("\"{prefix}:{part}\"")),
                "{query}: soapC.cpp never writes {prefix}:{part}"
            );
            assert!(
                !soap_c.contains(&format!("\"{part}\"")),
                "{query}: soapC.cpp writes an unqualified {part}"
            );
        }
    }

    // A C++ client on the 2011 code: Subscribe over each SOAP version.
    let dir = work.path().join("2011");
    let mut gxx = Command::new("g++");
    gxx.current_dir(&dir).args([
        "-O0",
        "-w",
        "-I.",
        "-o",
        "subscribe_2011",
        &format!("{GSOAP_DIR}/subscribe_2011.cpp"),
        "soapC.cpp",
        "soapClient.cpp",
        "-lgsoap++",
    ]);
    run(gxx, "g++ subscribe_2011".to_owned()).await;
    for (soap, soap_version) in [("11", "1.1"), ("12", "1.2")] {
        let mut client = Command::new(dir.join("subscribe_2011"));
        client.args([&source_url, &sink.url("notify"), soap]);
        let output = run(client, format!("gSOAP client over SOAP {soap}")).await;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let field = |name: &str| -> &str {
            stdout
                .lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
                .unwrap_or_else(|| panic!("no {name} in {stdout}"))
        };
        assert_eq!(field("expires"), "PT10M", "{stdout}");
        assert_eq!(
            field("manager"),
            format!("{source_url}/subscriptions"),
            "{stdout}"
        );
        // gSOAP hands over the reference parameter as literal XML; its text is the id.
        let reference = field("reference");
        let id = reference
            .split_once('>')
            .and_then(|(_, rest)| rest.split_once('<'))
            .map(|(id, _)| id)
            .unwrap_or_else(|| panic!("{reference}"));
        let (status, _, text) =
            get(&server, &server.url(&format!("/api/v1/subscriptions/{id}"))).await;
        assert_eq!(status, 200, "SOAP {soap}: {text}");
        let view: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(view["status"], "active", "{view}");
        assert_eq!(view["dialect"]["eventing"], "2011", "{view}");
        assert_eq!(view["dialect"]["soap"], soap_version, "{view}");
        assert_eq!(view["notify_to"], sink.url("notify"), "{view}");
    }
    assert_eq!(server.active("default").await, 2);
}
