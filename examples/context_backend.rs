//! A SOAP service to try herald's context services with: listens on loopback, prints every
//! request it receives (the `Herald-Instance-Id` herald adds, and the body) and answers with a
//! SOAP 1.2 response naming the instance.
//!
//! `cargo run --release --example context_backend [ADDRESS]` (default `127.0.0.1:9100`)

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Uri};
use axum::response::IntoResponse;
use axum::routing::post;

async fn answer(uri: Uri, headers: HeaderMap, body: Bytes) -> impl IntoResponse {
    let instance = headers
        .get("herald-instance-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("none")
        .to_owned();
    println!(
        "POST {uri}  instance: {instance}\n{}\n",
        String::from_utf8_lossy(&body)
    );
    let envelope = format!(
        "<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\"><s:Body><Done xmlns=\"urn:example\">instance {instance}</Done></s:Body></s:Envelope>"
    );
    (
        [("content-type", "application/soap+xml; charset=utf-8")],
        envelope,
    )
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9100".to_owned());
    let app = Router::new().fallback(post(answer));
    let listener = tokio::net::TcpListener::bind(&address).await?;
    println!("backend listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}
