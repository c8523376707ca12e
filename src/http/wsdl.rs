//! `GET /eventing/{source}?wsdl[=VERSION]` and `GET /eventing/{source}?xsd=NAME`: the WSDL of an
//! event source in a WS-Eventing version, and the schemas it imports. Open like the SOAP
//! endpoints they describe (no bearer token).

use axum::extract::{Path, RawQuery, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::api::{engine_problem, problem};
use super::base_url;
use crate::eventing::wsdl;

/// The media type of the documents.
const XML_UTF8: &str = "text/xml; charset=utf-8";

/// What a GET of an event source asks for.
enum Wanted {
    Wsdl(String),
    Schema(String),
}

/// Reads `?wsdl`, `?wsdl=VERSION` or `?xsd=NAME`: exactly one of them, else `None`.
fn wanted(query: Option<&str>) -> Option<Wanted> {
    let mut found = Vec::new();
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "wsdl" => found.push(Wanted::Wsdl(value.into_owned())),
            "xsd" => found.push(Wanted::Schema(value.into_owned())),
            _ => {}
        }
    }
    if found.len() != 1 {
        return None;
    }
    found.pop()
}

/// Serves a source's WSDL or one of its schemas, with the source's addresses filled in.
pub(super) async fn describe(
    state: State<AppState>,
    Path(source): Path<String>,
    query: RawQuery,
    headers: HeaderMap,
) -> Response {
    describe_source(state, source, query, headers).await
}

/// [`describe`] for a source named by its own route.
pub(super) async fn describe_source(
    State(state): State<AppState>,
    source: String,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if let Err(err) = state.engine.source(&source) {
        return engine_problem(err);
    }
    let Some(wanted) = wanted(query.as_deref()) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "Bad description request",
            "GET /eventing/{source} takes exactly one of ?wsdl (WS-Eventing 2011), \
             ?wsdl=2004-08, ?wsdl=2004-01 or ?xsd=NAME; SOAP requests are POSTed",
        );
    };
    let source_url = wsdl::source_url(&base_url(&state, &headers), &source);
    let text = match wanted {
        Wanted::Wsdl(value) => match wsdl::wsdl_version(&value) {
            Some(version) => wsdl::wsdl(version, &source_url),
            None => {
                let known: Vec<&str> = wsdl::WSDL_VERSIONS.iter().map(|(n, _)| *n).collect();
                return problem(
                    StatusCode::BAD_REQUEST,
                    "Unknown WS-Eventing version",
                    format!(
                        "?wsdl= takes {} (or nothing, for 2011), not '{}'",
                        known.join(", "),
                        value.chars().take(40).collect::<String>()
                    ),
                );
            }
        },
        Wanted::Schema(name) => match wsdl::schema(&name, &source_url) {
            Some(text) => text,
            None => {
                let known: Vec<&str> = wsdl::schema_names().collect();
                return problem(
                    StatusCode::NOT_FOUND,
                    "Unknown schema",
                    format!(
                        "no schema named '{}'; ?xsd= takes {}",
                        name.chars().take(40).collect::<String>(),
                        known.join(", ")
                    ),
                );
            }
        },
    };
    let mut response = (StatusCode::OK, text).into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(XML_UTF8));
    response
}
