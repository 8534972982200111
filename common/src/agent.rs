//! The agent protocol: JSON text frames over the websocket at `/api/v1/agent/connect`.
//!
//! It is level-triggered, as Kubernetes' kubelet is: on connect and on every change the server
//! sends the agent the *whole* desired set of instances for its node, numbered by a generation;
//! the agent makes its Docker engine match that set and reports the *whole* observed set back.
//! A lost message is healed by the next one, never by replaying a diff.
//!
//! Versioning: the agent's first frame is [`AgentMessage::Hello`] with [`PROTOCOL_VERSION`].
//! A server that does not speak that version answers [`ServerMessage::Refused`] with a message
//! for the operator and closes; unknown message types are refused the same way.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::cluster::{InstanceState, NodeResources};

/// Bumped on any change an older peer would misread.
pub const PROTOCOL_VERSION: u32 = 1;

/// How often an agent heartbeats; the server's node timeout is several of these.
pub const HEARTBEAT_SECONDS: u64 = 2;

/// Agent → server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentMessage {
    /// The first frame: who this node is and what it offers.
    Hello {
        protocol: u32,
        name: String,
        /// The address instance ports are published on (and probed at).
        address: String,
        labels: BTreeMap<String, String>,
        capacity: NodeResources,
        agent_version: String,
    },
    Heartbeat,
    /// Every instance the agent knows of on its node, after applying `generation`.
    Observed {
        generation: u64,
        instances: Vec<ObservedInstance>,
    },
}

/// Server → agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Registration accepted.
    Welcome { node_id: Uuid },
    /// Registration refused (old protocol, bad or expired token, unknown message); the agent
    /// should not retry until an operator acts, so the message says what to do. A second agent
    /// under a name already connected is not refused: the newest connection replaces the old.
    Refused { reason: String },
    /// The complete set of instances this node must run.
    Desired {
        generation: u64,
        instances: Vec<DesiredInstance>,
    },
}

/// Everything an agent needs to run one instance, frozen when the instance is created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredInstance {
    pub id: Uuid,
    pub team: String,
    pub app: String,
    pub image: String,
    /// The port the app listens on inside the container.
    pub port: u16,
    pub cpu_millis: u32,
    pub memory_mib: u32,
    pub health_check_path: String,
}

/// What the agent sees of one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedInstance {
    pub id: Uuid,
    pub state: InstanceState,
    /// The engine's message for an image or start error, or the last exit's summary.
    pub reason: Option<String>,
    /// The port it is published on at the node's address.
    pub host_port: Option<u16>,
    pub restarts: u32,
    pub last_exit_code: Option<i64>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_tagged_json() {
        let hello = AgentMessage::Hello {
            protocol: PROTOCOL_VERSION,
            name: "n1".into(),
            address: "127.0.0.1".into(),
            labels: BTreeMap::from([("zone".into(), "a".into())]),
            capacity: NodeResources {
                cpu_millis: 2000,
                memory_mib: 1024,
            },
            agent_version: "0.1.0".into(),
        };
        let json = serde_json::to_value(&hello).unwrap();
        assert_eq!(json["type"], "hello");
        assert_eq!(json["protocol"], PROTOCOL_VERSION);
        let back: AgentMessage = serde_json::from_value(json).unwrap();
        assert_eq!(back, hello);

        let desired: ServerMessage =
            serde_json::from_str(r#"{"type":"desired","generation":3,"instances":[]}"#).unwrap();
        assert_eq!(
            desired,
            ServerMessage::Desired {
                generation: 3,
                instances: vec![]
            }
        );
    }

    #[test]
    fn an_unknown_message_type_is_an_error_not_a_default() {
        assert!(serde_json::from_str::<ServerMessage>(r#"{"type":"teleport"}"#).is_err());
        assert!(serde_json::from_str::<AgentMessage>(r#"{"type":"hello"}"#).is_err());
    }
}
