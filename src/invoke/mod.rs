//! Invocation callbacks (Oracle BES, seed 002): herald calls a service asynchronously for each
//! raised invoker event and puts its answer, as a named callback event correlated by the
//! invoker's key, on an agent. The rules (parameter precedence, where each answer goes, retries
//! and give-up) are the engine's; here are the wire (`message.rs`), the runner that makes the
//! calls (`runner.rs`), and the AMQP bridge that publishes an agent's messages to a broker
//! (`bridge.rs`).

pub mod bridge;
pub mod message;
pub mod runner;
