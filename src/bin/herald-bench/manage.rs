//! Scenario 3's second half: Renew and Unsubscribe to the subscription manager, on the
//! subscriptions the Subscribe run made; and each lifecycle phase's row, set beside the echo.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::load::{self, Latency, SOAP12, WSA, WSE11};
use crate::machine::Meters;
use crate::process::Herald;
use crate::report::{Row, per_second, percent, rate, thousands, verdict};

/// The issue's target for every lifecycle write: this share of the echo baseline.
const TARGET: f64 = 0.50;

/// A 2011 SOAP 1.2 message to the manager at `to` for subscription `id` (`uuid:…`).
fn manager_message(to: &str, id: &str, operation: &str, body: &str) -> String {
    format!(
        r#"<s:Envelope xmlns:s="{SOAP12}" xmlns:wsa="{WSA}" xmlns:wse="{WSE11}" xmlns:hrd="urn:herald:eventing"><s:Header><wsa:Action>http://www.w3.org/2011/03/ws-evt/{operation}</wsa:Action><wsa:MessageID>urn:uuid:{}</wsa:MessageID><wsa:To>{to}</wsa:To><hrd:SubscriptionId wsa:IsReferenceParameter="true">{id}</hrd:SubscriptionId></s:Header><s:Body>{body}</s:Body></s:Envelope>"#,
        uuid::Uuid::new_v4()
    )
}

/// The ids of every active subscription of the default source, from the JSON API.
async fn subscription_ids(
    client: &reqwest::Client,
    herald: &Herald,
) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = herald.url("/api/v1/subscriptions?source=default&status=active&limit=500");
        if let Some(after) = &after {
            url.push_str(&format!("&after={after}"));
        }
        let page = client
            .get(&url)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        let page: serde_json::Value = serde_json::from_str(&page)?;
        let items = page["items"].as_array().context("a page without items")?;
        ids.extend(
            items
                .iter()
                .filter_map(|item| item["id"].as_str().map(str::to_owned)),
        );
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => return Ok(ids),
        }
    }
}

/// One lifecycle phase's load against herald, before it is set beside the echo.
pub struct Measured {
    /// The row's scenario: "3 renew", "7 PostgreSQL subscribe".
    pub scenario: String,
    /// What the row measured, at what size, and the CPU it took.
    pub size: String,
    /// What one request is called in a rate: "renews".
    pub what: &'static str,
    pub run: load::Requests,
}

impl Measured {
    /// The phase's row, its rate a share of `echo_rate`, judged against the target.
    pub fn row(self, echo_rate: f64) -> Row {
        let what = self.what;
        let (row, _, share) = self.rated(echo_rate);
        let row = row.target(format!(
            "≥ {:.0}% of echo: {}",
            TARGET * 100.0,
            verdict(share >= TARGET)
        ));
        eprintln!("   {what}: {} ({})", row.result, row.latency);
        row
    }

    /// The phase's row without a target, its rate and that rate's share of `echo_rate`.
    pub fn rated(self, echo_rate: f64) -> (Row, f64, f64) {
        let achieved = rate(self.run.count, self.run.elapsed);
        let share = achieved / echo_rate.max(f64::MIN_POSITIVE);
        let row = Row::new(
            &self.scenario,
            self.size,
            format!(
                "{} = {}% of the echo",
                per_second(achieved, self.what),
                percent(share)
            ),
        )
        .latency(Latency::cell(Latency::of(self.run.latencies)));
        (row, achieved, share)
    }
}

/// Renews the subscriptions round and round for `length`, then unsubscribes each once, with
/// the same client and concurrency as the echo.
pub async fn renew_and_unsubscribe(
    client: &reqwest::Client,
    herald: &mut Herald,
    (concurrency, length): (usize, Duration),
    (size, postgres): (&str, bool),
) -> anyhow::Result<Vec<Measured>> {
    let ids = Arc::new(subscription_ids(client, herald).await?);
    anyhow::ensure!(!ids.is_empty(), "no subscriptions to renew");
    let manager = herald.url("/eventing/default/subscriptions");
    let count = ids.len() as u64;
    let meters = Meters::start(herald.pid(), postgres)?;
    let renewals = {
        let (ids, to) = (ids.clone(), manager.clone());
        load::requests_for(
            client,
            &manager,
            length,
            concurrency,
            "RenewResponse",
            move |i| {
                let id = &ids[(i % count) as usize];
                manager_message(
                    &to,
                    id,
                    "Renew",
                    "<wse:Renew><wse:Expires>PT6H</wse:Expires></wse:Renew>",
                )
            },
        )
        .await
        .context("Renew")?
    };
    let renew_cpu = meters.describe("herald ", renewals.count)?;
    herald.check_alive()?;
    let meters = Meters::start(herald.pid(), postgres)?;
    let ends = {
        let (ids, to) = (ids.clone(), manager.clone());
        load::requests(
            client,
            &manager,
            0..count,
            concurrency,
            "UnsubscribeResponse",
            "unsubscribed",
            move |i| manager_message(&to, &ids[i as usize], "Unsubscribe", "<wse:Unsubscribe/>"),
        )
        .await
        .context("Unsubscribe")?
    };
    let end_cpu = meters.describe("herald ", ends.count)?;
    herald.check_alive()?;
    let prefix = if postgres { "7 PostgreSQL" } else { "3" };
    Ok([
        ("renew", renewals, "renews", renew_cpu),
        ("unsubscribe", ends, "unsubscribes", end_cpu),
    ]
    .into_iter()
    .map(|(name, run, what, cpu)| Measured {
        scenario: format!("{prefix} {name}"),
        size: format!("{size}; durable; {} subscriptions; {cpu}", thousands(count)),
        what,
        run,
    })
    .collect())
}
