//! Subscriptions in the JSON API: webhook subscriptions made, read, changed and deleted
//! (`/api/v1/subscriptions`), any subscription read or cancelled by id, and the paginated,
//! filterable list of them all.

use crate::domain::wsman::StartAt;
use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::api::{ApiPath, body_problem, engine_problem, json_response, problem};
use super::{AppState, read_body, views};
use crate::domain::subscription::{ReaderDelivery, SourceName, SubscriptionId};
use crate::engine::{EngineError, WebhookChange, WebhookFilter, WebhookRequest};
use crate::store::webhooks::Listing;

/// The largest page.
const MAX_PAGE: u32 = 500;

/// A filter as the JSON API takes it: `{"topic": "…"}` or `{"xpath": "…", "namespaces": {…}}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterBody {
    pub topic: Option<String>,
    pub xpath: Option<String>,
    #[serde(default)]
    pub namespaces: std::collections::BTreeMap<String, String>,
}

/// `POST /api/v1/subscriptions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    pub source: String,
    pub url: String,
    pub filter: Option<FilterBody>,
    pub expires: Option<String>,
    /// `standard-webhooks` (the default), `cloudevents-binary` or `cloudevents-structured`.
    #[schema(pattern = "^(standard-webhooks|cloudevents-binary|cloudevents-structured)$")]
    pub format: Option<String>,
    pub secret: Option<String>,
    pub end_url: Option<String>,
    /// Replay from a position: a sequence number (a delivery's `herald-sequence`): the
    /// events after it that are still retained come first; or `"earliest"`: from the oldest
    /// retained. Absent: the events published from now on.
    pub start_after: Option<StartAfter>,
}

/// Where a webhook subscription starts: after a sequence number, or `"earliest"`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum StartAfter {
    /// After this sequence number.
    Seq(u64),
    /// `"earliest"`: from the oldest event retained.
    Named(String),
}

/// `PATCH /api/v1/subscriptions/{id}`: each field present changes; `"filter": null` removes
/// the filter, `"secret": null` has herald generate a new one.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchBody {
    pub url: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<FilterBody>)]
    pub filter: Option<Option<FilterBody>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub secret: Option<Option<String>>,
    pub expires: Option<String>,
}

/// A field that is present (even as `null`) is `Some`.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// `GET /api/v1/subscriptions` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub source: Option<String>,
    /// `active` or `ended`.
    #[param(pattern = "^(active|ended)$")]
    pub status: Option<String>,
    /// `webhook` or `soap`.
    #[param(pattern = "^(webhook|soap)$")]
    pub kind: Option<String>,
    pub after: Option<String>,
    /// The page size, 1-500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

fn bad_request(detail: impl Into<String>) -> Response {
    problem(StatusCode::BAD_REQUEST, "Bad request", detail)
}

fn filter_of(body: FilterBody) -> Result<WebhookFilter, String> {
    match (body.topic, body.xpath) {
        (Some(topic), None) if body.namespaces.is_empty() => Ok(WebhookFilter::Topic(topic)),
        (None, Some(xpath)) => Ok(WebhookFilter::XPath(
            xpath,
            body.namespaces.into_iter().collect(),
        )),
        _ => {
            Err("a filter is {\"topic\": \"…\"} or {\"xpath\": \"…\", \"namespaces\": {…}}".into())
        }
    }
}

fn delivery_of(format: Option<&str>) -> Result<ReaderDelivery, String> {
    match format.unwrap_or("standard-webhooks") {
        "standard-webhooks" => Ok(ReaderDelivery::Webhook),
        "cloudevents-binary" => Ok(ReaderDelivery::CloudEventsBinary),
        "cloudevents-structured" => Ok(ReaderDelivery::CloudEventsStructured),
        other => Err(format!(
            "format '{other}' is not one of standard-webhooks, cloudevents-binary, \
             cloudevents-structured"
        )),
    }
}

/// A JSON body of type `T`, or the problem with it.
async fn json_body<T: serde::de::DeserializeOwned>(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<T, Response> {
    let bytes = read_body(state, headers, body)
        .await
        .map_err(|err| body_problem(err, state.max_body_bytes))?;
    serde_json::from_slice(&bytes).map_err(|err| bad_request(format!("the JSON body: {err}")))
}

/// Refusals of a webhook request.
fn webhook_problem(err: EngineError) -> Response {
    match err {
        EngineError::InvalidWebhook(_)
        | EngineError::Expiry(_)
        | EngineError::Filter(_)
        | EngineError::EndpointRefused(_)
        | EngineError::InvalidBookmark(_) => {
            problem(StatusCode::BAD_REQUEST, "Bad request", err.to_string())
        }
        EngineError::SourceFull { .. } => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "Source full",
            err.to_string(),
        ),
        other => engine_problem(other),
    }
}

/// `POST /api/v1/subscriptions`: a webhook subscription.
#[utoipa::path(
    post,
    path = "/api/v1/subscriptions",
    tag = "subscriptions",
    request_body = CreateBody,
    responses(
        (status = 201, description = "Made; `secret` is in this answer only", body = views::WebhookView, headers(("Location" = String, description = "The subscription's URL"))),
        (status = 400, description = "A malformed body, an unknown format, a bad filter, expiry or URL", body = views::Problem, content_type = "application/problem+json"),
        (status = 401, description = "The bearer token is missing or wrong", body = views::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown source", body = views::Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive in time", body = views::Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = views::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The source is full, or the store is unavailable", body = views::Problem, content_type = "application/problem+json"),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let body: CreateBody = match json_body(&state, &headers, body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let delivery = match delivery_of(body.format.as_deref()) {
        Ok(delivery) => delivery,
        Err(detail) => return bad_request(detail),
    };
    let filter = match body.filter.map(filter_of).transpose() {
        Ok(filter) => filter,
        Err(detail) => return bad_request(detail),
    };
    let start = match body.start_after {
        None => StartAt::Head,
        Some(StartAfter::Named(text)) if text == "earliest" => StartAt::Earliest,
        Some(StartAfter::Seq(seq)) => StartAt::After(seq),
        Some(StartAfter::Named(_)) => {
            return bad_request("start_after must be a sequence number or \"earliest\"".to_owned());
        }
    };
    let request = WebhookRequest {
        start,
        source: body.source,
        url: body.url,
        filter,
        expires: body.expires,
        delivery,
        secret: body.secret,
        end_url: body.end_url,
    };
    let made = match state.engine.subscribe_webhook(request).await {
        Ok(made) => made,
        Err(err) => return webhook_problem(err),
    };
    let id = made.subscription.id;
    match state.engine.record(id).await {
        Ok((record, head)) => {
            let mut response = json_response(
                StatusCode::CREATED,
                &views::WebhookView::of(record, head, made.secret),
            );
            if let Ok(location) =
                HeaderValue::from_str(&format!("/api/v1/subscriptions/{}", id.key()))
            {
                response.headers_mut().insert("location", location);
            }
            response
        }
        Err(err) => engine_problem(err),
    }
}

fn unknown_subscription() -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "Unknown subscription",
        "no subscription with this identifier",
    )
}

use views::AnySubscriptionView as View;

/// `GET /api/v1/subscriptions/{id}`: status, cursor, backlog and retry state.
#[utoipa::path(
    get,
    path = "/api/v1/subscriptions/{id}",
    tag = "subscriptions",
    params(("id" = String, Path, description = "The subscription's identifier")),
    responses(
        (status = 200, description = "The subscription", body = views::AnySubscriptionView),
        (status = 401, description = "The bearer token is missing or wrong", body = views::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown subscription", body = views::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = views::Problem, content_type = "application/problem+json"),
        (status = 400, description = "A path parameter that is not UTF-8", body = views::Problem, content_type = "application/problem+json"),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn read(State(state): State<AppState>, ApiPath(id): ApiPath<String>) -> Response {
    let Some(id) = SubscriptionId::parse(&id) else {
        return unknown_subscription();
    };
    match state.engine.record(id).await {
        Ok((record, head)) => {
            tracing::debug!(subscription = %id, "subscription looked up");
            json_response(StatusCode::OK, &View::of(record, head, None))
        }
        Err(err) => {
            tracing::debug!(subscription = %id, error = %err, "subscription looked up: not found");
            engine_problem(err)
        }
    }
}

/// `PATCH /api/v1/subscriptions/{id}`: a webhook's URL, filter, secret or expiry.
#[utoipa::path(
    patch,
    path = "/api/v1/subscriptions/{id}",
    tag = "subscriptions",
    params(("id" = String, Path, description = "The subscription's identifier")),
    request_body = PatchBody,
    responses(
        (status = 200, description = "Changed; `secret` is present when a new one was made", body = views::AnySubscriptionView),
        (status = 400, description = "A malformed body, a bad filter, expiry or URL, or not a webhook", body = views::Problem, content_type = "application/problem+json"),
        (status = 401, description = "The bearer token is missing or wrong", body = views::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown subscription", body = views::Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive in time", body = views::Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = views::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = views::Problem, content_type = "application/problem+json"),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn change(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(id) = SubscriptionId::parse(&id) else {
        return unknown_subscription();
    };
    let body: PatchBody = match json_body(&state, &headers, body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let filter = match body.filter {
        Some(Some(filter)) => match filter_of(filter) {
            Ok(filter) => Some(Some(filter)),
            Err(detail) => return bad_request(detail),
        },
        Some(None) => Some(None),
        None => None,
    };
    let change = WebhookChange {
        url: body.url,
        filter,
        secret: body.secret,
        expires: body.expires,
    };
    let secret = match state.engine.change_webhook(id, change).await {
        Ok(secret) => secret,
        Err(err) => return webhook_problem(err),
    };
    match state.engine.record(id).await {
        Ok((record, head)) => json_response(StatusCode::OK, &View::of(record, head, secret)),
        Err(err) => engine_problem(err),
    }
}

/// `DELETE /api/v1/subscriptions/{id}`: a webhook's owner ends it (no end notice); any other
/// subscription is cancelled by an operator (its subscriber gets SubscriptionEnd with
/// SourceCancelling).
#[utoipa::path(
    delete,
    path = "/api/v1/subscriptions/{id}",
    tag = "subscriptions",
    params(("id" = String, Path, description = "The subscription's identifier")),
    responses(
        (status = 204, description = "Ended"),
        (status = 401, description = "The bearer token is missing or wrong", body = views::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown subscription", body = views::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = views::Problem, content_type = "application/problem+json"),
        (status = 400, description = "A path parameter that is not UTF-8", body = views::Problem, content_type = "application/problem+json"),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn delete(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Response {
    let Some(id) = SubscriptionId::parse(&id) else {
        return unknown_subscription();
    };
    let ended = match state.engine.delete_webhook(id).await {
        Err(EngineError::UnknownSubscription) => state.engine.cancel(id).await.map(|_| ()),
        other => other,
    };
    tracing::debug!(subscription = %id, ok = ended.is_ok(), "subscription ended by the API");
    match ended {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(err) => engine_problem(err),
    }
}

/// `GET /api/v1/subscriptions?source=&status=&kind=&after=&limit=`.
#[utoipa::path(
    get,
    path = "/api/v1/subscriptions",
    tag = "subscriptions",
    params(ListQuery),
    responses(
        (status = 200, description = "A page, in identifier order", body = views::SubscriptionPage),
        (status = 400, description = "A bad query parameter", body = views::Problem, content_type = "application/problem+json"),
        (status = 401, description = "The bearer token is missing or wrong", body = views::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = views::Problem, content_type = "application/problem+json"),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let query = match query {
        Ok(Query(query)) => query,
        Err(err) => return bad_request(format!("the query: {}", err.body_text())),
    };
    let source = match query.source.as_deref().map(SourceName::parse) {
        Some(None) => return bad_request("not a source name"),
        Some(Some(source)) => Some(source),
        None => None,
    };
    let active = match query.status.as_deref() {
        None => None,
        Some("active") => Some(true),
        Some("ended") => Some(false),
        Some(_) => return bad_request("status is active or ended"),
    };
    let deliveries = match query.kind.as_deref() {
        None => Vec::new(),
        Some("webhook") => vec![
            ReaderDelivery::Webhook.as_str(),
            ReaderDelivery::CloudEventsBinary.as_str(),
            ReaderDelivery::CloudEventsStructured.as_str(),
        ],
        Some("soap") => vec![ReaderDelivery::SoapPush.as_str()],
        Some(_) => return bad_request("kind is webhook or soap"),
    };
    let after = match query.after.as_deref().map(SubscriptionId::parse) {
        Some(None) => return bad_request("after is a subscription id"),
        Some(after) => after,
        None => None,
    };
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return bad_request(format!("limit is 1 to {MAX_PAGE}"));
    }
    let listing = Listing {
        source,
        active,
        deliveries,
        after,
        limit,
    };
    let page = match state.engine.list_subscriptions(&listing).await {
        Ok(page) => page,
        Err(err) => return engine_problem(err),
    };
    let next = (page.len() == limit as usize)
        .then(|| page.last().map(|(record, _)| record.subscription.id.key()))
        .flatten();
    let items = page
        .into_iter()
        .map(|(record, head)| View::of(record, head, None))
        .collect();
    json_response(StatusCode::OK, &views::SubscriptionPage { items, next })
}

/// The subscription routes of the JSON API.
pub fn api_router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/subscriptions", get(list).post(create))
        .route(
            "/api/v1/subscriptions/{id}",
            get(read).patch(change).delete(delete),
        )
}
