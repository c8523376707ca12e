//! `herald subscribe`, `renew`, `status` and `unsubscribe`.
//!
//! A SOAP subscription is made with a WS-Eventing Subscribe in the version asked for; a webhook
//! subscription with `POST /api/v1/subscriptions`. Either way the reference printed is the
//! subscription's identifier; the other verbs look it up in the JSON API to learn its source,
//! dialect and kind, then speak to its manager in that dialect (or to the JSON API).

use reqwest::Method;
use serde_json::{Value, json};

use super::client::{Client, text};
use super::wire::{self, FilterOption, Manager, SubscribeOptions};
use super::{CliError, Connection, Report};
use crate::domain::subscription::{EventingVersion, SoapVersion, WireDialect};
use crate::eventing::version::Operation;

/// The WS-Eventing version of a SOAP subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VersionArg {
    /// W3C WS-Eventing 2011 (WS-Addressing 1.0).
    #[value(name = "2011")]
    W3c2011,
    /// WS-Eventing August 2004 (WS-Addressing 2004/08), as WS-Management and DPWS speak it.
    #[value(name = "2004-08")]
    Aug2004,
    /// WS-Eventing January 2004 (WS-Addressing 2003/03).
    #[value(name = "2004-01")]
    Jan2004,
}

/// The SOAP version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SoapArg {
    /// SOAP 1.1.
    #[value(name = "1.1")]
    Soap11,
    /// SOAP 1.2.
    #[value(name = "1.2")]
    Soap12,
}

/// Options of `herald subscribe`.
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("endpoint").required(true).args(["notify_to", "webhook"])))]
#[command(group(clap::ArgGroup::new("filter").args(["filter_xpath", "filter_topic"])))]
pub struct SubscribeArgs {
    /// The event source to subscribe to (herald's built-in one is `default`).
    pub source: String,
    /// Subscribe over WS-Eventing (SOAP): notifications are POSTed to this URL.
    #[arg(long, value_name = "URL")]
    pub notify_to: Option<String>,
    /// Subscribe a JSON webhook instead: events are POSTed to this URL as they were published.
    #[arg(long, value_name = "URL")]
    pub webhook: Option<String>,
    /// WS-Eventing version (SOAP subscriptions).
    #[arg(long, value_enum, default_value = "2011")]
    pub version: VersionArg,
    /// SOAP version (SOAP subscriptions).
    #[arg(long, value_enum, default_value = "1.2")]
    pub soap: SoapArg,
    /// XPath 1.0 filter in the version's default dialect: 2011 evaluates it against the event
    /// (`/o:order[@total > 100]`), 2004 against the notification's envelope
    /// (`s12:Body/o:order[@total > 100]`).
    #[arg(long, value_name = "EXPR")]
    pub filter_xpath: Option<String>,
    /// Topic filter: whitespace-separated action patterns, a trailing `*` matching any rest.
    #[arg(long, value_name = "PATTERNS")]
    pub filter_topic: Option<String>,
    /// A namespace prefix for the XPath filter, as PREFIX=URI (repeatable).
    #[arg(long = "namespace", value_name = "PREFIX=URI")]
    pub namespaces: Vec<String>,
    /// Requested expiry: an xs:duration (PT10M) or a date-time (2030-01-01T00:00:00Z).
    #[arg(long, value_name = "WHEN")]
    pub expires: Option<String>,
    /// Where herald sends SubscriptionEnd (SOAP) or its end notice (webhook).
    #[arg(long, value_name = "URL")]
    pub end_to: Option<String>,
    /// Webhook body format: standard-webhooks, cloudevents-binary, cloudevents-structured.
    #[arg(long, value_name = "FORMAT", requires = "webhook")]
    pub format: Option<String>,
    /// Webhook signing secret (whsec_…); herald makes one when none is given.
    #[arg(
        long,
        value_name = "SECRET",
        requires = "webhook",
        hide_env_values = true
    )]
    pub secret: Option<String>,
    #[command(flatten)]
    pub connection: Connection,
}

/// Options of `herald renew`.
#[derive(Debug, Clone, clap::Args)]
pub struct RenewArgs {
    /// The subscription's reference (its identifier, `uuid:…`, as `herald subscribe` prints).
    pub reference: String,
    /// New expiry: an xs:duration (PT1H) or a date-time; herald's default when left out.
    #[arg(long, value_name = "WHEN")]
    pub expires: Option<String>,
    #[command(flatten)]
    pub connection: Connection,
}

/// Options of `herald status` and `herald unsubscribe`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReferenceArgs {
    /// The subscription's reference (its identifier, `uuid:…`, as `herald subscribe` prints).
    pub reference: String,
    #[command(flatten)]
    pub connection: Connection,
}

fn version_of(arg: VersionArg) -> EventingVersion {
    match arg {
        VersionArg::W3c2011 => EventingVersion::W3c2011,
        VersionArg::Aug2004 => EventingVersion::Aug2004,
        VersionArg::Jan2004 => EventingVersion::Jan2004,
    }
}

/// `herald subscribe`.
pub async fn subscribe(args: &SubscribeArgs) -> Result<Report, CliError> {
    let client = Client::new(&args.connection)?;
    let filter = match (&args.filter_xpath, &args.filter_topic) {
        (Some(xpath), _) => Some(FilterOption::XPath(xpath.clone())),
        (None, Some(topic)) => Some(FilterOption::Topic(topic.clone())),
        (None, None) => None,
    };
    if let Some(url) = &args.webhook {
        return subscribe_webhook(&client, args, url, filter).await;
    }
    let namespaces = args
        .namespaces
        .iter()
        .map(|binding| {
            binding
                .split_once('=')
                .map(|(prefix, uri)| (prefix.trim().to_owned(), uri.trim().to_owned()))
                .filter(|(prefix, _)| !prefix.is_empty())
                .ok_or_else(|| {
                    CliError::Usage(format!("--namespace takes PREFIX=URI, not '{binding}'"))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let eventing = version_of(args.version);
    let soap = match args.soap {
        SoapArg::Soap11 => SoapVersion::Soap11,
        SoapArg::Soap12 => SoapVersion::Soap12,
    };
    let dialect = WireDialect {
        eventing,
        soap,
        addressing: eventing.default_addressing(),
    };
    let options = SubscribeOptions {
        notify_to: args.notify_to.clone().unwrap_or_default(),
        end_to: args.end_to.clone(),
        expires: args.expires.clone(),
        filter,
        namespaces,
    };
    let source_url = client.url(&format!("/eventing/{}", args.source));
    let message = wire::subscribe(dialect, &source_url, &options);
    let answer = client.soap(&message).await?;
    let subscribed = wire::subscribed(eventing, &source_url, &answer)?;
    let expires = subscribed.expires.as_deref().unwrap_or("(never)");
    let text = format!(
        "subscribed to {source} over WS-Eventing {version}, SOAP {soap}\n\
         manager:    {manager}\n\
         identifier: {id}\n\
         expires:    {expires}\n\
         reference:  {id}   (herald status|renew|unsubscribe {id})\n",
        source = args.source,
        version = eventing.as_str(),
        soap = soap.as_str(),
        manager = subscribed.manager,
        id = subscribed.id,
    );
    let json = json!({
        "reference": subscribed.id,
        "id": subscribed.id,
        "kind": "soap",
        "source": args.source,
        "version": eventing.as_str(),
        "soap": soap.as_str(),
        "manager": subscribed.manager,
        "expires": subscribed.expires,
    });
    Ok(Report { text, json })
}

async fn subscribe_webhook(
    client: &Client,
    args: &SubscribeArgs,
    url: &str,
    filter: Option<FilterOption>,
) -> Result<Report, CliError> {
    let mut request = json!({"source": args.source, "url": url});
    let members = [
        ("expires", args.expires.clone()),
        ("end_url", args.end_to.clone()),
        ("format", args.format.clone()),
        ("secret", args.secret.clone()),
    ];
    for (name, value) in members {
        if let Some(value) = value {
            request[name] = Value::String(value);
        }
    }
    match filter {
        Some(FilterOption::XPath(xpath)) => request["filter"] = json!({ "xpath": xpath }),
        Some(FilterOption::Topic(topic)) => request["filter"] = json!({ "topic": topic }),
        None => {}
    }
    let view = client
        .api(Method::POST, "/api/v1/subscriptions", Some(&request))
        .await?
        .ok_or_else(|| CliError::unexpected(201, "the answer has no body", b""))?;
    let id = text(&view, "id");
    let mut text_out = format!(
        "subscribed webhook {url} to {source}\n\
         identifier: {id}\n\
         format:     {format}\n\
         expires at: {expires}\n",
        source = args.source,
        format = text(&view, "format"),
        expires = or_never(&view, "expires_at"),
    );
    if let Some(secret) = view.get("secret").and_then(Value::as_str) {
        text_out.push_str(&format!("secret:     {secret}\n"));
    }
    text_out.push_str(&format!(
        "reference:  {id}   (herald status|renew|unsubscribe {id})\n"
    ));
    let json = json!({"reference": id, "id": id, "kind": "webhook", "subscription": view});
    Ok(Report {
        text: text_out,
        json,
    })
}

/// A subscription found by its reference.
struct Found {
    id: String,
    view: Value,
    /// Its WS-Eventing dialect; `None` for a webhook subscription.
    dialect: Option<WireDialect>,
}

impl Found {
    fn manager(&self, client: &Client) -> Option<(WireDialect, Manager)> {
        let dialect = self.dialect?;
        let source = text(&self.view, "source");
        let base = client.url("");
        Some((
            dialect,
            Manager::of(&base, &source, dialect.eventing, &self.id),
        ))
    }
}

/// Looks a reference up in the JSON API.
async fn find(client: &Client, reference: &str) -> Result<Found, CliError> {
    let id = reference.trim();
    if id.is_empty() || id.contains('/') {
        return Err(CliError::Usage(format!(
            "'{reference}' is not a subscription reference (uuid:…)"
        )));
    }
    let view = client
        .api(Method::GET, &format!("/api/v1/subscriptions/{id}"), None)
        .await?
        .ok_or_else(|| CliError::unexpected(200, "the answer has no body", b""))?;
    let dialect = if text(&view, "delivery") == "soap-push" {
        let part = |name: &str| view.get("dialect").map(|d| text(d, name));
        let eventing = part("eventing").and_then(|v| EventingVersion::from_name(&v));
        let soap = part("soap").and_then(|v| SoapVersion::from_name(&v));
        let addressing =
            part("addressing").and_then(|v| crate::domain::subscription::WsaVersion::from_name(&v));
        match (eventing, soap, addressing) {
            (Some(eventing), Some(soap), Some(addressing)) => Some(WireDialect {
                eventing,
                soap,
                addressing,
            }),
            _ => {
                return Err(CliError::unexpected(
                    200,
                    "the subscription's dialect is not one this client knows",
                    view.to_string().as_bytes(),
                ));
            }
        }
    } else {
        None
    };
    Ok(Found {
        id: Some(text(&view, "id"))
            .filter(|found| !found.is_empty())
            .unwrap_or_else(|| id.to_owned()),
        view,
        dialect,
    })
}

fn or_never(view: &Value, name: &str) -> String {
    view.get(name)
        .and_then(Value::as_str)
        .unwrap_or("never")
        .to_owned()
}

/// `herald renew`: Renew to the manager, or PATCH `expires` for a webhook.
pub async fn renew(args: &RenewArgs) -> Result<Report, CliError> {
    let client = Client::new(&args.connection)?;
    let found = find(&client, &args.reference).await?;
    let path = format!("/api/v1/subscriptions/{}", found.id);
    let granted = match found.manager(&client) {
        Some((dialect, manager)) => {
            let message =
                wire::manage(dialect, &manager, Operation::Renew, args.expires.as_deref());
            let answer = client.soap(&message).await?;
            wire::managed(dialect.eventing, Operation::Renew, &answer)?
        }
        None => {
            let body = json!({ "expires": args.expires });
            client.api(Method::PATCH, &path, Some(&body)).await?;
            None
        }
    };
    let view = client
        .api(Method::GET, &path, None)
        .await?
        .unwrap_or_default();
    let expires_at = or_never(&view, "expires_at");
    let granted_text = granted
        .as_deref()
        .map_or(String::new(), |granted| format!("{granted}, "));
    Ok(Report {
        text: format!(
            "renewed {}: expires {granted_text}at {expires_at}\n",
            found.id
        ),
        json: json!({
            "id": found.id, "expires": granted, "expires_at": view.get("expires_at"),
        }),
    })
}

/// `herald status`: what herald knows of the subscription, and for an active SOAP subscription
/// its manager's GetStatus answer (2004/08, 2011).
pub async fn status(args: &ReferenceArgs) -> Result<Report, CliError> {
    let client = Client::new(&args.connection)?;
    let found = find(&client, &args.reference).await?;
    let view = &found.view;
    let status = text(view, "status");
    let mut reported = None;
    if let Some((dialect, manager)) = found.manager(&client)
        && status == "active"
        && dialect.eventing.supports(Operation::GetStatus)
    {
        let message = wire::manage(dialect, &manager, Operation::GetStatus, None);
        let answer = client.soap(&message).await?;
        reported = wire::managed(dialect.eventing, Operation::GetStatus, &answer)?;
    }
    let mut out = format!("{}  {status}", found.id);
    if let Some(reason) = view.get("end_reason").and_then(Value::as_str) {
        out.push_str(&format!(" ({reason})"));
    }
    out.push('\n');
    out.push_str(&format!("source:     {}\n", text(view, "source")));
    match found.dialect {
        Some(dialect) => out.push_str(&format!(
            "dialect:    WS-Eventing {}, SOAP {}, WS-Addressing {}\n\
             notify to:  {}\n",
            dialect.eventing.as_str(),
            dialect.soap.as_str(),
            dialect.addressing.as_str(),
            text(view, "notify_to"),
        )),
        None => out.push_str(&format!(
            "webhook:    {} ({})\n",
            text(view, "url"),
            text(view, "format")
        )),
    }
    let expires = match &reported {
        Some(left) => format!("{left} (at {})", or_never(view, "expires_at")),
        None => or_never(view, "expires_at"),
    };
    out.push_str(&format!("expires:    {expires}\n"));
    let number = |name: &str| view.get(name).and_then(Value::as_u64).unwrap_or(0);
    out.push_str(&format!(
        "delivered:  up to event {} of {} (backlog {}), {} failed attempts\n",
        number("cursor"),
        number("head"),
        number("backlog"),
        number("attempts"),
    ));
    if let Some(error) = view.get("last_error").and_then(Value::as_str) {
        out.push_str(&format!("last error: {error}\n"));
    }
    Ok(Report {
        text: out,
        json: json!({
            "id": found.id,
            "status": status,
            "end_reason": view.get("end_reason"),
            "expires": reported,
            "expires_at": view.get("expires_at"),
            "subscription": view,
        }),
    })
}

/// `herald unsubscribe`: Unsubscribe to the manager, or DELETE for a webhook.
pub async fn unsubscribe(args: &ReferenceArgs) -> Result<Report, CliError> {
    let client = Client::new(&args.connection)?;
    let found = find(&client, &args.reference).await?;
    match found.manager(&client) {
        Some((dialect, manager)) => {
            let message = wire::manage(dialect, &manager, Operation::Unsubscribe, None);
            let answer = client.soap(&message).await?;
            wire::managed(dialect.eventing, Operation::Unsubscribe, &answer)?;
        }
        None => {
            let path = format!("/api/v1/subscriptions/{}", found.id);
            client.api(Method::DELETE, &path, None).await?;
        }
    }
    Ok(Report {
        text: format!("unsubscribed {}\n", found.id),
        json: json!({"id": found.id, "unsubscribed": true}),
    })
}
