//! The AMQP bridge: an agent configured with a RabbitMQ URL and queue has a reader that
//! publishes each of its messages there, through the default exchange to a durable queue, as a
//! persistent message with `correlation_id` (the callback event's name) and `message_id` (the
//! message's event id, stable across redeliveries), and publisher confirms: the reader's cursor
//! moves only once the broker has confirmed. A broker that is down or refuses is a failed
//! delivery, retried with back-off like any other, for as long as it takes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use tokio::sync::Mutex;

use super::message::{payload_bytes, read_message};
use crate::delivery::Bridge;
use crate::delivery::client::Attempt;
use crate::domain::event::Event;
use crate::domain::subscription::{SourceName, Subscription};
use crate::engine::AmqpBridge;

/// How long connecting, declaring and one confirm may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The bridges of every declared agent that has one.
#[derive(Default)]
pub struct AmqpBridges {
    links: BTreeMap<SourceName, Link>,
}

struct Link {
    bridge: AmqpBridge,
    channel: Mutex<Option<(Connection, Channel)>>,
}

impl AmqpBridges {
    /// Bridges for these agents (nothing connects until the first message).
    pub fn new(bridges: impl IntoIterator<Item = (SourceName, AmqpBridge)>) -> Arc<AmqpBridges> {
        Arc::new(AmqpBridges {
            links: bridges
                .into_iter()
                .map(|(agent, bridge)| {
                    let link = Link {
                        bridge,
                        channel: Mutex::new(None),
                    };
                    (agent, link)
                })
                .collect(),
        })
    }
}

/// `text` as an AMQP short string, when it fits one.
fn short(text: &str) -> Option<ShortString> {
    ShortString::try_new(text.to_owned()).ok()
}

fn failed(error: String) -> Attempt {
    Attempt::Failed {
        error,
        retry_after: None,
        gone: false,
    }
}

impl Link {
    async fn open(&self) -> Result<(Connection, Channel), String> {
        let connection = Connection::connect(&self.bridge.url, ConnectionProperties::default())
            .await
            .map_err(|err| format!("connecting to the AMQP broker failed: {err}"))?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|err| format!("opening an AMQP channel failed: {err}"))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|err| format!("enabling publisher confirms failed: {err}"))?;
        channel
            .queue_declare(
                self.bridge.queue.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|err| format!("declaring queue '{}' failed: {err}", self.bridge.queue))?;
        Ok((connection, channel))
    }

    async fn publish(&self, event: &Event) -> Result<(), String> {
        let mut slot = self.channel.lock().await;
        if slot.as_ref().is_none_or(|(connection, channel)| {
            !connection.status().connected() || !channel.status().connected()
        }) {
            *slot = None;
            let opened = tokio::time::timeout(TIMEOUT, self.open())
                .await
                .map_err(|_| "timed out connecting to the AMQP broker".to_owned())??;
            *slot = Some(opened);
        }
        let Some((_, channel)) = slot.as_ref() else {
            return Err("no AMQP channel".into());
        };
        let view = read_message(&event.payload);
        let mut headers = FieldTable::default();
        headers.insert(
            "herald-agent".into(),
            AMQPValue::LongString(event.source.as_str().into()),
        );
        headers.insert(
            "herald-seq".into(),
            AMQPValue::LongLongInt(i64::try_from(event.seq).unwrap_or(i64::MAX)),
        );
        let mut properties = BasicProperties::default()
            .with_message_id(event.id.to_string().into())
            .with_delivery_mode(2)
            .with_app_id("herald".into());
        let body = match &view {
            Some(view) => {
                // Properties are AMQP short strings (at most 255 bytes); a longer value travels
                // in a header only.
                if let Some(correlation) = short(&view.correlation_id) {
                    properties = properties.with_correlation_id(correlation);
                }
                if let Some(kind) = short(view.name.as_deref().unwrap_or(view.kind)) {
                    properties = properties.with_type(kind);
                }
                if let Some(content_type) = view.content_type.as_deref().and_then(short) {
                    properties = properties.with_content_type(content_type);
                }
                headers.insert(
                    "herald-correlation-id".into(),
                    AMQPValue::LongString(view.correlation_id.as_str().into()),
                );
                for (name, value) in [
                    ("herald-key", &view.key),
                    ("herald-invocation-id", &view.invocation_id),
                    ("herald-invoker", &view.invoker),
                ] {
                    headers.insert(name.into(), AMQPValue::LongString(value.as_str().into()));
                }
                if let Some(error) = &view.error {
                    headers.insert(
                        "herald-error".into(),
                        AMQPValue::LongString(error.as_str().into()),
                    );
                }
                payload_bytes(view)
            }
            None => event.payload.as_bytes().to_vec(),
        };
        let properties = properties.with_headers(headers);
        let confirm = async {
            channel
                .basic_publish(
                    "".into(),
                    self.bridge.queue.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &body,
                    properties,
                )
                .await?
                .await
        };
        let confirmation = match tokio::time::timeout(TIMEOUT, confirm).await {
            Err(_) => Err("the AMQP broker did not confirm in time".to_owned()),
            Ok(Err(err)) => Err(format!("publishing to the AMQP broker failed: {err}")),
            Ok(Ok(confirmation)) => Ok(confirmation),
        };
        match confirmation {
            Ok(Confirmation::Ack(None)) => Ok(()),
            Ok(Confirmation::Ack(Some(_))) => Err(format!(
                "the broker returned the message: queue '{}' is gone",
                self.bridge.queue
            )),
            Ok(Confirmation::Nack(_)) => Err("the AMQP broker refused the message (nack)".into()),
            Ok(Confirmation::NotRequested) => Err("publisher confirms are not enabled".into()),
            Err(error) => {
                // The connection is in doubt: open a new one for the next attempt.
                *slot = None;
                Err(error)
            }
        }
    }
}

#[async_trait]
impl Bridge for AmqpBridges {
    async fn publish(&self, reader: &Subscription, event: &Event) -> Attempt {
        let Some(link) = self.links.get(&reader.source) else {
            return failed(format!(
                "agent '{}' has no AMQP bridge configured",
                reader.source
            ));
        };
        match link.publish(event).await {
            Ok(()) => Attempt::Delivered,
            Err(error) => failed(error),
        }
    }
}
