//! Invocation callbacks (seed 002): the rules. A raise is stored once per key within the
//! idempotency window; each answer of the service decides the invocation's end here: a callback
//! event on its agent (the default inbound agent when none is named), an answer kept on the
//! invocation when no callback event is named (herald's deviation from the seed: nothing is
//! silently dropped), or the error agent for a fault, a refusal or failing past the give-up
//! window. Agents are logs; pull listeners lease their queue entries.

use std::sync::Arc;
use std::time::Duration;

use jiff::SignedDuration;
use tokio::sync::Notify;

use super::{Engine, EngineError};
use crate::delivery::retry::RetryPolicy;
use crate::domain::event::NewEvent;
use crate::domain::invocation::{
    AgentMessage, Completion, Invocation, InvocationId, InvocationRecord, InvocationState,
    Parameters, canonical, merge,
};
use crate::domain::subscription::{SoapVersion, SourceName};
use crate::store::Completed;

/// The longest event key: Oracle's correlation id column is `VARCHAR2(240)`.
pub const MAX_KEY_CHARS: usize = 240;

/// How an invoker calls its service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvokeProtocol {
    /// The payload is the SOAP Body of an envelope of this version, sent with this action.
    Soap {
        /// 1.1 or 1.2.
        version: SoapVersion,
        /// `SOAPAction` (1.1) or the `action` parameter of the content type (1.2).
        action: String,
    },
    /// The payload is the body of a plain HTTP POST with this content type.
    Http {
        /// `Content-Type`.
        content_type: String,
    },
}

/// An invoker's configuration (`[invokers.NAME]`).
#[derive(Debug, Clone, PartialEq)]
pub struct InvokerPolicy {
    /// Its name: the invoker event's.
    pub name: SourceName,
    /// The service.
    pub url: String,
    /// SOAP or plain HTTP.
    pub protocol: InvokeProtocol,
    /// One call's time limit.
    pub timeout: Duration,
    /// Calls in flight at once, per node.
    pub concurrency: usize,
    /// How failed calls are retried, and when they are given up.
    pub retry: RetryPolicy,
    /// Stored parameters (canonical names); a raise's override them.
    pub parameters: Parameters,
    /// A raise with a key raised within this long names the earlier invocation.
    pub idempotency_window: Duration,
    /// The largest payload accepted, in bytes.
    pub max_payload_bytes: usize,
}

/// An agent declared in config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentPolicy {
    /// Its name.
    pub name: SourceName,
    /// Whether pull listeners read it (a queue entry per message).
    pub pull: bool,
    /// Its AMQP bridge, if any.
    pub bridge: Option<AmqpBridge>,
}

/// Where an agent's AMQP bridge publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpBridge {
    /// `amqp://user:password@host:port/vhost`.
    pub url: String,
    /// The queue (declared durable), published to through the default exchange.
    pub queue: String,
}

/// Invokers and agents (`[invokers.NAME]`, `[agents.NAME]`, `[invocations]`).
#[derive(Debug, Clone, PartialEq)]
pub struct InvocationPolicy {
    /// The invokers.
    pub invokers: Vec<InvokerPolicy>,
    /// The declared agents.
    pub agents: Vec<AgentPolicy>,
    /// Where callback events go when no agent is named.
    pub default_agent: SourceName,
    /// Where failed invocations go.
    pub error_agent: SourceName,
    /// A received message's lease when the listener asks for none.
    pub visibility_timeout: Duration,
}

impl Default for InvocationPolicy {
    fn default() -> InvocationPolicy {
        InvocationPolicy {
            invokers: Vec::new(),
            agents: Vec::new(),
            default_agent: SourceName::parse("inbound").unwrap_or_else(|| unreachable!()),
            error_agent: SourceName::parse("errors").unwrap_or_else(|| unreachable!()),
            visibility_timeout: Duration::from_secs(30),
        }
    }
}

/// A successful answer's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The SOAP Body's content, or the HTTP body (in base64 when `base64`).
    pub body: String,
    /// Its content type, when known.
    pub content_type: Option<String>,
    /// The body was not UTF-8 text: `body` holds its base64.
    pub base64: bool,
}

/// What the service made of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A 2xx answer that is not a SOAP fault: its payload.
    Response(Reply),
    /// A SOAP fault, whatever the status: the service's answer, not retried.
    Fault {
        /// The fault as received.
        body: String,
        /// Its reason, for operators.
        reason: String,
    },
    /// Worth another call later: a transport error, a timeout, a 5xx or 429 without a fault.
    Retryable {
        /// What happened.
        error: String,
        /// The service's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// Not worth another call: any other status, or the endpoint policy refused the address.
    Refused {
        /// What happened.
        error: String,
        /// The body, if any.
        body: Option<String>,
    },
}

/// Builds the messages agents hold (the protocol layer knows their XML).
pub trait AgentMessages: Send + Sync {
    /// The callback event for a successful call.
    fn callback(&self, invocation: &Invocation, event_name: &str, reply: &Reply) -> NewEvent;
    /// The error message for a failed invocation.
    fn error(&self, invocation: &Invocation, error: &str, response: Option<&str>) -> NewEvent;
}

/// How an invocation ended, for the caller's counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// The callback event is on its agent.
    Callback,
    /// Answered with no callback event: kept on the invocation.
    Kept,
    /// On the error agent.
    Failed,
    /// Pending again: the call is retried later.
    Retried,
    /// Another node had taken it over: nothing recorded here.
    NotOwned,
}

impl Engine {
    /// The configured invoker with this name.
    pub fn invoker(&self, name: &str) -> Result<&InvokerPolicy, EngineError> {
        SourceName::parse(name)
            .and_then(|name| self.invokers.get(&name))
            .ok_or_else(|| EngineError::UnknownInvoker(name.chars().take(64).collect()))
    }

    /// Every configured invoker.
    pub fn invokers(&self) -> impl Iterator<Item = &InvokerPolicy> {
        self.invokers.values()
    }

    /// What wakes an invoker's runner on this node (a raise, a retry).
    pub fn invoker_wake(&self, invoker: &SourceName) -> Arc<Notify> {
        let mut wakes = self.invoker_wakes.lock().unwrap_or_else(|e| e.into_inner());
        wakes.entry(invoker.clone()).or_default().clone()
    }

    fn wake_invoker(&self, invoker: &SourceName) {
        self.invoker_wake(invoker).notify_one();
    }

    /// Raises an invoker event: stores the invocation (the invoker's parameters with the
    /// raise's over them) and returns its id and whether it is new; within the idempotency
    /// window a key raised before names the earlier invocation and nothing is stored.
    pub async fn raise(
        &self,
        invoker: &str,
        key: &str,
        payload: String,
        parameters: &Parameters,
    ) -> Result<(InvocationId, bool), EngineError> {
        let policy = self.invoker(invoker)?;
        let invalid = |what: String| EngineError::InvalidRaise(what);
        if key.trim().is_empty() || key.chars().count() > MAX_KEY_CHARS {
            return Err(invalid(format!(
                "the event key must be 1-{MAX_KEY_CHARS} characters"
            )));
        }
        if payload.len() > policy.max_payload_bytes {
            return Err(EngineError::EventTooLarge {
                source_name: policy.name.clone(),
                limit: policy.max_payload_bytes,
            });
        }
        let raised = canonical(parameters).map_err(invalid)?;
        let invocation = Invocation {
            id: InvocationId::new(),
            invoker: policy.name.clone(),
            key: key.to_owned(),
            payload,
            parameters: merge(&policy.parameters, &raised),
            raised_at: self.clock.now(),
        };
        if let Some(event) = invocation.callback_event()
            && event.chars().count() > MAX_KEY_CHARS
        {
            return Err(invalid(format!(
                "callback_event must be at most {MAX_KEY_CHARS} characters"
            )));
        }
        if let Some(agent) = invocation.callback_agent() {
            let Some(name) = SourceName::parse(agent) else {
                return Err(invalid(format!(
                    "callback_agent '{agent}' is not an agent name (1-64 of A-Z a-z 0-9 . _ -)"
                )));
            };
            // An undeclared agent is made on first use, but never out of another kind's log.
            let taken = self.sources.contains_key(&name)
                || self.contexts.contains_key(&name)
                || crate::domain::context::service_of(&name).is_some();
            if taken && !self.agents.contains_key(&name) {
                return Err(invalid(format!(
                    "callback_agent '{agent}' names an event source or a context service's log, not an agent"
                )));
            }
        }
        let window = SignedDuration::try_from(policy.idempotency_window).unwrap_or_default();
        let window_start = invocation
            .raised_at
            .checked_sub(window)
            .unwrap_or(invocation.raised_at);
        let (id, new) = self
            .store
            .raise_invocation(&invocation, window_start)
            .await?;
        if new {
            self.wake_invoker(&policy.name);
        }
        Ok((id, new))
    }

    /// Invocations this node was running when it last stopped become pending again (counted
    /// as resumed: their calls may have reached the service). At start, before any runner.
    pub async fn recover_invocations(&self) -> Result<u64, EngineError> {
        Ok(self
            .store
            .recover_invocations(self.delivery.node(), self.clock.now())
            .await?)
    }

    /// Takes up to `limit` of an invoker's due invocations to call now.
    pub async fn claim_invocations(
        &self,
        invoker: &SourceName,
        limit: u32,
    ) -> Result<Vec<InvocationRecord>, EngineError> {
        Ok(self
            .store
            .claim_invocations(self.delivery.node(), invoker, self.clock.now(), limit)
            .await?)
    }

    /// Records what the service answered and ends the invocation, or schedules its next call.
    pub async fn answered(
        &self,
        mut record: InvocationRecord,
        answer: Answer,
        messages: &dyn AgentMessages,
    ) -> Result<Finished, EngineError> {
        let policy = self.invokers.get(&record.invocation.invoker);
        let invocation = &record.invocation;
        let completion = match answer {
            Answer::Response(reply) => match invocation.callback_event() {
                Some(event_name) => {
                    let agent = invocation
                        .callback_agent()
                        .and_then(SourceName::parse)
                        .unwrap_or_else(|| self.invocation_policy.default_agent.clone());
                    Completion {
                        state: InvocationState::Done,
                        message: Some(self.agent_message(
                            agent,
                            event_name,
                            messages.callback(invocation, event_name, &reply),
                        )),
                        response: Some(reply.body),
                        error: None,
                    }
                }
                None => Completion {
                    state: InvocationState::Kept,
                    response: Some(reply.body),
                    error: None,
                    message: None,
                },
            },
            Answer::Fault { body, reason } => {
                let error = format!("SOAP fault: {reason}");
                self.failure(invocation, error, Some(body), messages)
            }
            Answer::Refused { error, body } => self.failure(invocation, error, body, messages),
            Answer::Retryable { error, retry_after } => {
                let now = self.clock.now();
                let retry = policy.map(|p| p.retry).unwrap_or_default();
                record.attempts = record.attempts.saturating_add(1);
                let since = *record.failing_since.get_or_insert(now);
                let failing_for = Duration::try_from(now.duration_since(since)).unwrap_or_default();
                if retry.gives_up(failing_for) {
                    let error = format!("given up after {} attempts: {error}", record.attempts);
                    self.failure(invocation, error, None, messages)
                } else {
                    let delay = retry.delay(record.attempts, retry_after, fastrand::f64());
                    record.next_at = SignedDuration::try_from(delay)
                        .ok()
                        .and_then(|d| now.checked_add(d).ok());
                    record.last_error = Some(error);
                    let node = self.delivery.node();
                    let id = record.invocation.id;
                    return Ok(
                        if self.store.retry_invocation_later(id, node, &record).await? {
                            Finished::Retried
                        } else {
                            Finished::NotOwned
                        },
                    );
                }
            }
        };
        let finished = match completion.state {
            InvocationState::Done => Finished::Callback,
            InvocationState::Kept => Finished::Kept,
            _ => Finished::Failed,
        };
        let node = self.delivery.node();
        match self
            .store
            .complete_invocation(invocation.id, node, &completion, self.clock.now())
            .await?
        {
            Completed::NotOwned => Ok(Finished::NotOwned),
            Completed::Recorded(appended) => {
                if let Some(event) = appended {
                    self.agent_wake(&event.source).notify_waiters();
                    self.delivery.appended(event).await;
                }
                Ok(finished)
            }
        }
    }

    fn failure(
        &self,
        invocation: &Invocation,
        error: String,
        response: Option<String>,
        messages: &dyn AgentMessages,
    ) -> Completion {
        let correlation = invocation
            .callback_event()
            .unwrap_or(invocation.invoker.as_str())
            .to_owned();
        let event = messages.error(invocation, &error, response.as_deref());
        Completion {
            state: InvocationState::Failed,
            message: Some(self.agent_message(
                self.invocation_policy.error_agent.clone(),
                &correlation,
                event,
            )),
            response,
            error: Some(error),
        }
    }

    fn agent_message(&self, agent: SourceName, correlation: &str, event: NewEvent) -> AgentMessage {
        AgentMessage {
            pull: self.agent(&agent).pull,
            agent,
            correlation_id: correlation.to_owned(),
            event,
        }
    }

    /// Re-invokes a failed invocation with its original key, payload and parameters.
    pub async fn retry_invocation(&self, id: InvocationId) -> Result<(), EngineError> {
        let record = self
            .store
            .invocation(id)
            .await?
            .ok_or(EngineError::UnknownInvocation)?;
        if !self.store.reopen_invocation(id, self.clock.now()).await? {
            return Err(EngineError::NotFailed(record.state));
        }
        self.wake_invoker(&record.invocation.invoker);
        Ok(())
    }

    /// Everything stored about an invocation.
    pub async fn invocation(&self, id: InvocationId) -> Result<InvocationRecord, EngineError> {
        self.store
            .invocation(id)
            .await?
            .ok_or(EngineError::UnknownInvocation)
    }
}
