//! A sink to try herald with: listens on loopback, prints every request it receives (the
//! SOAP action and the body) and answers `202 Accepted`.
//!
//! `cargo run --release --example sink [ADDRESS]` (default `127.0.0.1:9000`)

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post;

/// The SOAP action: the `SOAPAction` header (SOAP 1.1) or the `action` parameter of the
/// content type (SOAP 1.2).
fn action(headers: &HeaderMap) -> String {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
    };
    let soap_action = header("soapaction").trim_matches('"');
    if !soap_action.is_empty() {
        return soap_action.to_owned();
    }
    header("content-type")
        .split(';')
        .filter_map(|parameter| parameter.trim().strip_prefix("action="))
        .map(|action| action.trim_matches('"').to_owned())
        .next()
        .unwrap_or_default()
}

async fn receive(uri: Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
    println!(
        "POST {uri}  action: {}\n{}\n",
        action(&headers),
        String::from_utf8_lossy(&body)
    );
    StatusCode::ACCEPTED
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9000".to_owned());
    let app = Router::new().fallback(post(receive));
    let listener = tokio::net::TcpListener::bind(&address).await?;
    println!("sink listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}
