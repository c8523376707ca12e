//! The OpenAPI 3.1 description of the JSON API, generated from the handlers' annotations and
//! their request and response types, served at `GET /api/v1/openapi.json` (open: tools fetch it
//! before they have a token).

use std::sync::LazyLock;

use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

use super::api::problem;
use super::{
    AppState, agents, api, channel_api, channels, console, contexts, invocations, subscriptions,
};

/// Where the document is served.
pub const PATH: &str = "/api/v1/openapi.json";

/// The JSON API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "herald JSON API",
        description = "herald's JSON API: publishing, webhook and other subscriptions, callback \
            contexts, invocations and agents, push channels. Errors are RFC 9457 problem \
            documents (`application/problem+json`). Operations marked with `bearerAuth` need \
            `Authorization: Bearer TOKEN` when herald is configured with an `api_token`; \
            channel management under `/api/v1/channels/{token}` and the device endpoints take \
            the channel's token as their capability instead.\n\n\
            Not described here: the SOAP endpoints (`/eventing/{source}`, `/contexts/{name}`, \
            `/invokers/{name}`; see their WSDL at `/eventing/{source}?wsdl`), the channel's \
            server-sent-events stream `GET /channels/{token}/stream`, and `/healthz`, \
            `/readyz`, `/metrics`."
    ),
    paths(
        api::publish_one,
        api::publish_batch,
        subscriptions::list,
        subscriptions::create,
        subscriptions::read,
        subscriptions::change,
        subscriptions::delete,
        contexts::queue_callback,
        contexts::instance,
        contexts::end_instance,
        invocations::raise,
        invocations::show,
        invocations::retry,
        agents::list,
        agents::receive,
        agents::ack,
        agents::nack,
        channel_api::open,
        channel_api::show,
        channel_api::close,
        channel_api::renew,
        channels::send,
        channels::register,
        channels::poll,
        console::overview,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "publishing", description = "Appending events to a source's log"),
        (name = "subscriptions", description = "Webhook subscriptions; any subscription read, listed or cancelled"),
        (name = "contexts", description = "Callback contexts (.NET context exchange): instances and their callbacks"),
        (name = "invocations", description = "Invoker events and the invocations they start"),
        (name = "agents", description = "Agents' queues: pull listeners"),
        (name = "channels", description = "Push channels: management, sending, registration, long poll"),
        (name = "console", description = "What the console shows: this node at a glance"),
    )
)]
pub struct ApiDoc;

/// Adds the `bearerAuth` scheme that the protected operations name.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearerAuth",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The document as JSON, written once.
static DOCUMENT: LazyLock<Result<String, String>> =
    LazyLock::new(|| ApiDoc::openapi().to_json().map_err(|err| err.to_string()));

/// `GET /api/v1/openapi.json`.
async fn document() -> Response {
    match &*DOCUMENT {
        Ok(text) => {
            let mut response = Response::new(axum::body::Body::from(text.clone()));
            response.headers_mut().insert(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(err) => {
            tracing::error!(error = %err, "the OpenAPI document could not be written");
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal error",
                "the OpenAPI document could not be written",
            )
        }
    }
}

/// The document's route (no bearer token).
pub fn router() -> Router<AppState> {
    Router::new().route(PATH, get(document))
}
