//! WS-Management Pull mode end to end: Pull-mode Subscribes shaped as openwsman and a Windows
//! client send them, `wsen:Pull` through the subscription manager (at the source's manager and
//! at `/wsman`), events in order with their actions, at least once under the cursor rule (an
//! older context reads again, a newer one moves on, the stored cursor never moves back and
//! survives a restart), MaxElements, MaxCharacters, filters, bookmarks, the wait and its
//! `wsman:TimedOut`, `wsen:Release`, and every fault Pull mode adds.

use std::time::{Duration, Instant};

use crate::harness::*;
use crate::publish::{TICK_ACTION, publish, tick};
use crate::wsman::{
    CIM_INDICATION, EVENT_LOG, WSMAN, WSMAN_FAULT, manager_of, send, send_action, windows_headers,
    windows_subscribe, wsman_sources,
};

const WSEN: &str = "http://schemas.xmlsoap.org/ws/2004/09/enumeration";
const WSEN_FAULT: &str = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/fault";
const PULL_MODE: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/Pull";
const PUSH_MODE: &str = "http://schemas.xmlsoap.org/ws/2004/08/eventing/DeliveryModes/Push";

/// A pulled subscription as its client keeps it: the manager, the reference parameters to
/// echo, and the context the SubscribeResponse gave.
struct Puller {
    manager: String,
    parameters: String,
    context: String,
}

/// The headers openwsman's client puts on its requests.
fn openwsman_headers() -> String {
    format!(
        r#"<w:ResourceURI s:mustUnderstand="true">{CIM_INDICATION}</w:ResourceURI>
        <w:MaxEnvelopeSize s:mustUnderstand="true">153600</w:MaxEnvelopeSize>
        <w:OperationTimeout>PT60S</w:OperationTimeout>"#
    )
}

/// A Pull-mode Subscribe as openwsman's client sends it: no NotifyTo, `filter` if any.
fn openwsman_subscribe(filter: &str) -> String {
    format!(
        r#"<e:Subscribe>
        <e:Delivery Mode="{PULL_MODE}"><w:Heartbeats>PT10S</w:Heartbeats></e:Delivery>
        <e:Expires>PT600S</e:Expires>{filter}
      </e:Subscribe>"#
    )
}

/// Subscribes in Pull mode; checks the response carries the context right after Expires.
async fn subscribe_pull(server: &TestServer, url: &str, headers: &str, body: &str) -> Puller {
    let reply = send(server, url, "Subscribe", headers, body).await;
    let (manager, parameters) = manager_of(&reply);
    let doc = reply.doc();
    let response = doc
        .descendants()
        .find(|n| n.has_tag_name((WSE08, "SubscribeResponse")))
        .expect("SubscribeResponse");
    let children: Vec<_> = response.children().filter(|n| n.is_element()).collect();
    let names: Vec<&str> = children.iter().map(|n| n.tag_name().name()).collect();
    assert_eq!(
        names,
        ["SubscriptionManager", "Expires", "EnumerationContext"],
        "{}",
        reply.text
    );
    assert_eq!(children[2].tag_name().namespace(), Some(WSEN));
    let context = reply.text_of(WSEN, "EnumerationContext").expect("context");
    Puller {
        manager,
        parameters,
        context,
    }
}

/// Sends `wsen:Pull` with `context` and `extra` (MaxElements, …) to the puller's manager.
async fn pull(server: &TestServer, puller: &Puller, context: &str, extra: &str) -> Reply {
    pull_with(server, puller, "", context, extra).await
}

/// [`pull`] with extra headers.
async fn pull_with(
    server: &TestServer,
    puller: &Puller,
    headers: &str,
    context: &str,
    extra: &str,
) -> Reply {
    let body = format!(
        r#"<n:Pull xmlns:n="{WSEN}"><n:EnumerationContext>{context}</n:EnumerationContext>{extra}</n:Pull>"#
    );
    send_action(
        server,
        &puller.manager,
        &format!("{WSEN}/Pull"),
        &format!("{}{headers}", puller.parameters),
        &body,
    )
    .await
}

/// Sends `wsen:Release` with `context` to the puller's manager.
async fn release(server: &TestServer, puller: &Puller, context: &str) -> Reply {
    let body = format!(
        r#"<n:Release xmlns:n="{WSEN}"><n:EnumerationContext>{context}</n:EnumerationContext></n:Release>"#
    );
    let action = format!("{WSEN}/Release");
    send_action(server, &puller.manager, &action, &puller.parameters, &body).await
}

/// `wsen:MaxElements`.
fn most(n: u32) -> String {
    format!("<n:MaxElements>{n}</n:MaxElements>")
}

/// The items of a PullResponse as (action, tick number), and its context.
#[track_caller]
fn pulled(reply: &Reply) -> (Vec<(String, u64)>, String) {
    assert_eq!(reply.status, 200, "Pull failed: {}", reply.text);
    assert_eq!(
        reply.action().as_deref(),
        Some(format!("{WSEN}/PullResponse").as_str())
    );
    assert_eq!(
        reply.count(WSEN, "EndOfSequence"),
        0,
        "an event subscription does not end by pulling"
    );
    let doc = reply.doc();
    let items = doc
        .descendants()
        .filter(|n| n.has_tag_name((WSMAN, "Event")))
        .map(|event| {
            assert!(
                event
                    .parent()
                    .is_some_and(|p| p.has_tag_name((WSEN, "Items"))),
                "{}",
                reply.text
            );
            let tick = event
                .children()
                .find(|n| n.has_tag_name(("urn:test", "tick")))
                .and_then(|t| t.attribute("n"))
                .and_then(|n| n.parse().ok())
                .expect("a tick");
            (event.attribute("Action").unwrap_or("").to_owned(), tick)
        })
        .collect();
    let context = reply.text_of(WSEN, "EnumerationContext").expect("context");
    (items, context)
}

/// The tick numbers of a PullResponse, each checked to carry the tick action; and its context.
#[track_caller]
fn ticks(reply: &Reply) -> (Vec<u64>, String) {
    let (items, context) = pulled(reply);
    assert!(
        items.iter().all(|(action, _)| action == TICK_ACTION),
        "{items:?}"
    );
    (items.into_iter().map(|(_, n)| n).collect(), context)
}

/// Asserts a fault: code, subcode and action.
#[track_caller]
fn assert_pull_fault(reply: &Reply, subcode: (&str, &str), receiver: bool, action: &str) {
    let fault = reply.assert_fault(Soap::V12, subcode, receiver);
    assert_eq!(fault.action.as_deref(), Some(action), "{}", reply.text);
}

#[track_caller]
fn assert_invalid_context(reply: &Reply) {
    assert_pull_fault(reply, (WSEN, "InvalidEnumerationContext"), true, WSEN_FAULT);
}

async fn publish_ticks(server: &TestServer, source: &str, ticks: std::ops::RangeInclusive<u64>) {
    for n in ticks {
        publish(server, source, TICK_ACTION, &tick(n)).await;
    }
}

#[tokio::test]
async fn an_openwsman_client_pulls_events_in_order_at_least_once_and_releases() {
    let server = TestServer::start_with(wsman_sources).await;
    let url = server.url("/eventing/cim");
    let puller = subscribe_pull(
        &server,
        &url,
        &openwsman_headers(),
        &openwsman_subscribe(""),
    )
    .await;
    assert_eq!(puller.manager, server.url("/eventing/cim/subscriptions"));
    assert_eq!(server.active("cim").await, 1);
    publish_ticks(&server, "cim", 1..=5).await;

    let first = pull(&server, &puller, &puller.context, &most(2)).await;
    let (items, second) = ticks(&first);
    assert_eq!(items, [1, 2]);
    // The response was lost, say: the same context reads the same events again.
    let again = pull(&server, &puller, &puller.context, &most(2)).await;
    assert_eq!(ticks(&again), (vec![1, 2], second.clone()));
    // The new context moves on; MaxElements defaults to 1.
    let (items, third) = ticks(&pull(&server, &puller, &second, "").await);
    assert_eq!(items, [3]);
    let (items, last) = ticks(&pull(&server, &puller, &third, &most(10)).await);
    assert_eq!(items, [4, 5], "what is there, without waiting for more");

    let release = release(&server, &puller, &last).await;
    assert_eq!(release.status, 200, "{}", release.text);
    assert_eq!(
        release.action().as_deref(),
        Some(format!("{WSEN}/ReleaseResponse").as_str())
    );
    assert_eq!(server.active("cim").await, 0, "Release ends it");
    assert_invalid_context(&pull(&server, &puller, &last, "").await);
    let status = send(
        &server,
        &puller.manager,
        "GetStatus",
        &puller.parameters,
        "<e:GetStatus/>",
    )
    .await;
    status.assert_fault(Soap::V12, (WSA2004, "DestinationUnreachable"), false);
}

#[tokio::test]
async fn a_windows_client_pulls_at_wsman_with_its_filter_bookmarks_and_max_characters() {
    let server = TestServer::start_with(wsman_sources).await;
    let wsman_url = server.url("/wsman");
    let body = windows_subscribe(SINK, SINK, "")
        .replace(PUSH_MODE, PULL_MODE)
        .replace("</e:Subscribe>", "<w:SendBookmarks/></e:Subscribe>");
    let headers = windows_headers(EVENT_LOG);
    let puller = subscribe_pull(&server, &wsman_url, &headers, &body).await;
    assert_eq!(puller.manager, wsman_url);
    assert!(
        puller.parameters.contains(EVENT_LOG),
        "{}",
        puller.parameters
    );
    publish_ticks(&server, "default", 1..=4).await;

    // Room for one item only: it ends the response; the filter passed over tick 1.
    let one_item = format!(
        r#"<wsman:Event Action="{TICK_ACTION}">{}</wsman:Event>"#,
        tick(2)
    );
    let limits = format!(
        "<n:MaxElements>10</n:MaxElements><n:MaxCharacters>{}</n:MaxCharacters>",
        one_item.chars().count() + 5
    );
    let reply = pull(&server, &puller, &puller.context, &limits).await;
    let (items, after_two) = ticks(&reply);
    assert_eq!(items, [2]);
    let position = reply
        .text_of(HERALD, "Position")
        .expect("a wsman:Bookmark header naming the position");
    assert_eq!(reply.count(WSMAN, "Bookmark"), 1, "{}", reply.text);
    assert!(
        after_two.ends_with(&format!(":{position}")),
        "{after_two} / {position}"
    );

    // The next event alone is larger than MaxCharacters: held back, not lost.
    let reply = pull(
        &server,
        &puller,
        &after_two,
        "<n:MaxCharacters>10</n:MaxCharacters>",
    )
    .await;
    assert_eq!(ticks(&reply), (vec![], after_two.clone()), "{}", reply.text);
    assert_eq!(reply.count(WSEN, "Items"), 0);

    let (items, _) = ticks(&pull(&server, &puller, &after_two, &most(10)).await);
    assert_eq!(items, [3, 4]);
}

#[tokio::test]
async fn a_pull_waits_for_events_and_times_out_with_the_wsman_fault() {
    let server = TestServer::start_with(wsman_sources).await;
    let url = server.url("/eventing/cim");
    let puller = subscribe_pull(
        &server,
        &url,
        &openwsman_headers(),
        &openwsman_subscribe(""),
    )
    .await;

    for (headers, body, at_least) in [
        ("", "<n:MaxTime>PT0.5S</n:MaxTime>", 450),
        // No MaxTime: the client's OperationTimeout bounds the wait.
        ("<w:OperationTimeout>PT0.3S</w:OperationTimeout>", "", 250),
        // Both: the shorter.
        (
            "<w:OperationTimeout>PT0.3S</w:OperationTimeout>",
            "<n:MaxTime>PT30S</n:MaxTime>",
            250,
        ),
    ] {
        let started = Instant::now();
        let reply = pull_with(&server, &puller, headers, &puller.context, body).await;
        let waited = started.elapsed();
        assert_pull_fault(&reply, (WSMAN, "TimedOut"), true, WSMAN_FAULT);
        assert!(
            waited >= Duration::from_millis(at_least) && waited < Duration::from_secs(5),
            "waited {waited:?}"
        );
    }

    // An event published while a Pull waits is returned at once.
    let publisher = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        publish(&server, "cim", TICK_ACTION, &tick(7)).await;
    };
    let started = Instant::now();
    let (reply, ()) = tokio::join!(
        pull(
            &server,
            &puller,
            &puller.context,
            "<n:MaxTime>PT20S</n:MaxTime>"
        ),
        publisher
    );
    assert_eq!(ticks(&reply).0, [7]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // Events the filter passes over: no items, and a context past them, so they are not read
    // again; then nothing more, and the wsman:TimedOut fault.
    let filter = r#"<w:Filter Dialect="http://www.w3.org/TR/1999/REC-xpath-19991116" xmlns:t="urn:test">//t:tick[@n &gt; 100]</w:Filter>"#;
    let picky = subscribe_pull(
        &server,
        &url,
        &openwsman_headers(),
        &openwsman_subscribe(filter),
    )
    .await;
    publish_ticks(&server, "cim", 8..=9).await;
    let reply = pull(
        &server,
        &picky,
        &picky.context,
        "<n:MaxTime>PT0.3S</n:MaxTime>",
    )
    .await;
    let (items, past) = ticks(&reply);
    assert!(items.is_empty() && past != picky.context, "{}", reply.text);
    let reply = pull(&server, &picky, &past, "<n:MaxTime>PT0.2S</n:MaxTime>").await;
    assert_pull_fault(&reply, (WSMAN, "TimedOut"), true, WSMAN_FAULT);
    publish(&server, "cim", TICK_ACTION, &tick(101)).await;
    assert_eq!(ticks(&pull(&server, &picky, &past, "").await).0, [101]);
}

#[tokio::test]
async fn a_waiting_pull_answers_at_once_when_herald_stops() {
    let server = TestServer::start_with(wsman_sources).await;
    let url = server.url("/eventing/cim");
    let puller = subscribe_pull(
        &server,
        &url,
        &openwsman_headers(),
        &openwsman_subscribe(""),
    )
    .await;
    let client = TestServer::remote(&server.url(""));
    let waiting = tokio::spawn(async move {
        let context = puller.context.clone();
        pull(&client, &puller, &context, "<n:MaxTime>PT50S</n:MaxTime>").await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    server.stop().await;
    let stopping = started.elapsed();
    let reply = waiting.await.unwrap();
    assert_pull_fault(&reply, (WSMAN, "TimedOut"), true, WSMAN_FAULT);
    assert!(
        stopping < Duration::from_secs(5),
        "the stop did not wait out the Pull: {stopping:?}"
    );
}

#[tokio::test]
async fn contexts_that_cannot_be_used_are_invalid_enumeration_contexts() {
    let server = TestServer::start_with(wsman_sources).await;
    let url = server.url("/eventing/cim");
    let headers = openwsman_headers();
    let puller = subscribe_pull(&server, &url, &headers, &openwsman_subscribe("")).await;
    let other = subscribe_pull(&server, &url, &headers, &openwsman_subscribe("")).await;
    publish_ticks(&server, "cim", 1..=2).await;
    let (_, position) = puller.context.rsplit_once(':').expect("a position");
    let at = |position: &str| {
        let (prefix, _) = puller.context.rsplit_once(':').expect("a position");
        format!("{prefix}:{position}")
    };

    // Not one herald wrote; none at all; past the head.
    assert_invalid_context(&pull(&server, &puller, "uuid:not-a-context", "").await);
    let reply = send_action(
        &server,
        &puller.manager,
        &format!("{WSEN}/Pull"),
        &puller.parameters,
        &format!(r#"<n:Pull xmlns:n="{WSEN}"><n:MaxElements>1</n:MaxElements></n:Pull>"#),
    )
    .await;
    assert_invalid_context(&reply);
    assert_invalid_context(&pull(&server, &puller, &at("999"), "").await);
    // Another subscription's context under this one's identifier.
    assert_invalid_context(&pull(&server, &puller, &other.context, "").await);
    // A push subscription's: neither Pull nor Release applies.
    let push = windows_subscribe(SINK, SINK, "");
    let reply = send(
        &server,
        &url,
        "Subscribe",
        &windows_headers(CIM_INDICATION),
        &push,
    )
    .await;
    let (_, push_parameters) = manager_of(&reply);
    let push_id = reply.text_of(WSE08, "Identifier").expect("identifier");
    let push_context = format!(
        "urn:herald:pull:{}:{position}",
        push_id.trim_start_matches("uuid:")
    );
    let push_puller = Puller {
        manager: puller.manager.clone(),
        parameters: push_parameters,
        context: push_context.clone(),
    };
    assert_invalid_context(&pull(&server, &push_puller, &push_context, "").await);
    let release = release(&server, &push_puller, &push_context).await;
    assert_invalid_context(&release);
    assert_eq!(
        server.active("cim").await,
        3,
        "the push subscription is still there"
    );
    // Malformed limits are schema violations.
    let reply = pull(&server, &puller, &puller.context, &most(0)).await;
    assert_pull_fault(&reply, (WSMAN, "SchemaValidationError"), false, WSMAN_FAULT);
    // Ended by Unsubscribe: its contexts are dead.
    let reply = send(
        &server,
        &puller.manager,
        "Unsubscribe",
        &puller.parameters,
        "<e:Unsubscribe/>",
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_invalid_context(&pull(&server, &puller, &puller.context, "").await);
}

#[tokio::test]
async fn the_stored_cursor_moves_only_forward_and_survives_a_restart() {
    let store = TestStore::new().await;
    let server = TestServer::start_in(&store, wsman_sources).await;
    let url = server.url("/eventing/cim");
    let puller = subscribe_pull(
        &server,
        &url,
        &openwsman_headers(),
        &openwsman_subscribe(""),
    )
    .await;
    let cursor = || async { store.integers("SELECT cursor FROM subscriptions").await };
    publish_ticks(&server, "cim", 1..=3).await;

    let (items, after_two) = ticks(&pull(&server, &puller, &puller.context, &most(2)).await);
    assert_eq!(items, [1, 2]);
    assert_eq!(
        cursor().await,
        [0],
        "nothing is acknowledged until the next Pull"
    );
    let (items, after_three) = ticks(&pull(&server, &puller, &after_two, "").await);
    assert_eq!(items, [3]);
    assert_eq!(
        cursor().await,
        [2],
        "presenting the context acknowledged what came before it"
    );
    let (items, _) = ticks(&pull(&server, &puller, &puller.context, &most(5)).await);
    assert_eq!(items, [1, 2, 3], "an older context reads again");
    assert_eq!(cursor().await, [2], "and does not move the cursor back");
    server.stop().await;

    let server = TestServer::start_in(&store, wsman_sources).await;
    let puller = Puller {
        manager: rebase(&puller.manager, &server.base),
        ..puller
    };
    let reply = pull(
        &server,
        &puller,
        &after_three,
        "<n:MaxTime>PT0.2S</n:MaxTime>",
    )
    .await;
    assert_pull_fault(&reply, (WSMAN, "TimedOut"), true, WSMAN_FAULT);
    assert_eq!(cursor().await, [3]);
    publish(&server, "cim", TICK_ACTION, &tick(4)).await;
    assert_eq!(
        ticks(&pull(&server, &puller, &after_three, "").await).0,
        [4]
    );
    let (items, _) = ticks(&pull(&server, &puller, &after_two, &most(5)).await);
    assert_eq!(items, [3, 4], "read from the store after the restart");
    assert_eq!(cursor().await, [3]);
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set HERALD_TEST_DATABASE and pass -- --include-ignored"]
async fn any_node_serves_a_pull_and_moves_the_shared_cursor() {
    let store = TestStore::new().await;
    assert!(
        store.is_postgres(),
        "this test needs a shared store: set {DATABASE_VARIABLE} to a PostgreSQL database"
    );
    let node = |name: &'static str| {
        TestServer::start_in(&store, move |config| {
            wsman_sources(config);
            config.node_id = herald::store::NodeId::parse(name);
            // Other nodes' appends reach a tail only by NOTIFY or this slow poll.
            config.delivery.poll_interval = Duration::from_secs(60);
        })
    };
    let (a, b) = (node("pull-a").await, node("pull-b").await);
    let puller = subscribe_pull(
        &a,
        &a.url("/eventing/cim"),
        &openwsman_headers(),
        &openwsman_subscribe(""),
    )
    .await;
    publish_ticks(&a, "cim", 1..=3).await;
    let on_b = Puller {
        manager: rebase(&puller.manager, &b.base),
        parameters: puller.parameters.clone(),
        context: puller.context.clone(),
    };
    let (items, next) = ticks(&pull(&b, &on_b, &on_b.context, &most(2)).await);
    assert_eq!(items, [1, 2], "node b serves a subscription node a owns");
    let (items, last) = ticks(&pull(&a, &puller, &next, "").await);
    assert_eq!(items, [3]);
    let cursor = store
        .integers("SELECT cursor FROM subscriptions WHERE status = 'active'")
        .await;
    assert_eq!(
        cursor,
        [2],
        "the Pull on node a acknowledged what node b handed out"
    );
    // A Pull waiting on node b is woken by an append on node a.
    let started = Instant::now();
    let (reply, _) = tokio::join!(
        pull(
            &b,
            &on_b,
            &last,
            "<n:MaxElements>5</n:MaxElements><n:MaxTime>PT20S</n:MaxTime>"
        ),
        async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            publish(&a, "cim", TICK_ACTION, &tick(4)).await
        }
    );
    assert_eq!(ticks(&reply).0, [4]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}
