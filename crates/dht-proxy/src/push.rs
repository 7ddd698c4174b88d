//! Push notifications: what the server sends, handed to a [`PushSink`].
//!
//! The server computes every push OpenDHT 2.4.12 sends (spec §6): value pushes for push
//! subscriptions, and reminder pushes (`timeout`) 22 h after a subscription or a push-enabled
//! permanent put was last refreshed. [`Gateway`](crate::Gateway) is the sink that sends them to
//! a gorush gateway and to UnifiedPush endpoints. Without a sink, pushes are counted and dropped,
//! and subscriptions start no DHT listen (as 2.4.12 without `--pushserver`).

use std::collections::BTreeMap;

use serde_json::Value as Json;

/// The subscriber's platform (`"platform"` in SUBSCRIBE and permanent puts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Platform {
    /// Unknown or empty: pushed in the iOS format, as OpenDHT does.
    None,
    /// `"android"`.
    Android,
    /// `"ios"`.
    Ios,
    /// `"unifiedpush"`: the token is the endpoint URL.
    UnifiedPush,
}

impl Platform {
    /// Parses OpenDHT's platform names; anything else is [`Platform::None`].
    pub fn parse(s: &str) -> Platform {
        match s {
            "android" => Platform::Android,
            "ios" => Platform::Ios,
            "unifiedpush" => Platform::UnifiedPush,
            _ => Platform::None,
        }
    }
}

/// One push to send.
#[derive(Clone, Debug, PartialEq)]
pub struct PushNotification {
    /// The device token (UnifiedPush: the endpoint URL).
    pub token: String,
    /// The platform, which decides the gateway format.
    pub platform: Platform,
    /// The topic (iOS bundle id; defaults to the server's `bundle_id`).
    pub topic: String,
    /// High or normal priority.
    pub high_priority: bool,
    /// The push's `data` members (`key`, `to`, `t`, `s`, `exp`, `ids`; or `timeout`, `vid`).
    pub data: BTreeMap<String, Json>,
}

/// Where computed pushes go. Called from the server's tasks: it must not block.
pub trait PushSink: Send + Sync + 'static {
    /// Sends (or queues) one push.
    fn push(&self, notification: PushNotification);
}

impl<F: Fn(PushNotification) + Send + Sync + 'static> PushSink for F {
    fn push(&self, notification: PushNotification) {
        self(notification)
    }
}
