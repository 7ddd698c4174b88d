//! Our `ProxyClient` in push mode against our server, with the test as the push gateway: a
//! listen subscribes instead of streaming; the gateway's push, handed to
//! `push_notification_received` as a phone would (every member a string), brings the new value
//! to the listen; `exp` expires without a request; `timeout` pushes renew the subscription or
//! re-POST the permanent put; another session's push is ignored; the last listen dropped
//! unsubscribes.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use dht_proto::InfoHash;
use dht_proto::value::Value;
use dht_proxy::{
    ClientConfig, Config, Gateway, GatewayConfig, ListenEvent, ProxyClient, ProxyServer,
    PushNotificationResult,
};
use serde_json::Value as Json;
use smol::stream::StreamExt;

/// The `data` of the gateway's last push about `key`, as the phone hands it over.
async fn push_about(gw: &FakeGateway, key: InfoHash, field: &str, seen: usize) -> BTreeMap<String, String> {
    let key = key.to_string();
    within(30, "a push at the gateway", async {
        loop {
            let got = gw.got();
            if let Some(r) = got
                .iter()
                .skip(seen)
                .find(|r| r.json()["notifications"][0]["data"][field].as_str() == Some(key.as_str()))
            {
                let data = r.json()["notifications"][0]["data"].clone();
                return data
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| {
                        let v = match v {
                            Json::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        (k.clone(), v)
                    })
                    .collect();
            }
            smol::Timer::after(Duration::from_millis(10)).await;
        }
    })
    .await
}

#[test]
fn pushes_handed_to_the_client_resume_its_listen() {
    smol::block_on(async {
        let gw = FakeGateway::start(vec![]).await;
        let gateway = Gateway::start(GatewayConfig {
            gateway: Some(gw.addr.to_string()),
            backoff: Duration::from_millis(50),
            ..GatewayConfig::default()
        });
        let (a, b) = real_pair().await;
        let config = Config {
            push: Some(Arc::new(gateway.clone())),
            ..Config::default()
        };
        let server = ProxyServer::bind(loopback(), Arc::new(b.clone()), config)
            .await
            .unwrap();
        let client = ProxyClient::new(
            &server.local_addr().to_string(),
            ClientConfig {
                request_timeout: Duration::from_secs(10),
                push_token: Some("tok1".into()),
                push_platform: "android".into(),
                client_id: "cli1".into(),
                ..ClientConfig::default()
            },
        )
        .unwrap();
        let key = InfoHash::get("pushed");
        let mut listen = client.listen(key);
        let mut second = client.listen(key);
        eventually(20, "subscribed", || server.stats().subscriptions == 1).await;
        assert_eq!(server.stats().listens, 0, "push mode opens no listen stream");

        // A value put on the plain node: the proxy pushes, the phone hands the push over.
        let stored = a.put(key, Value::new(0, b"v1".to_vec())).await.unwrap();
        let push = push_about(&gw, key, "key", 0).await;
        assert_eq!(push["to"], "cli1");
        assert_eq!(push["s"], client.session_id());
        let r = within(20, "push", client.push_notification_received(&push)).await;
        assert_eq!(r, PushNotificationResult::Values);
        for l in [&mut listen, &mut second] {
            match within(20, "added", l.next()).await.unwrap() {
                ListenEvent::Added(vs) => assert_eq!(vs[0].data, b"v1"),
                other => panic!("{other:?}"),
            }
        }

        // Another session's push is ignored; a push about an unknown key does nothing.
        let mut wrong = push.clone();
        wrong.insert("s".into(), "other".into());
        assert_eq!(
            client.push_notification_received(&wrong).await,
            PushNotificationResult::IgnoredWrongSession
        );
        let mut unknown = push.clone();
        unknown.insert("key".into(), InfoHash::get("nobody").to_string());
        assert_eq!(
            client.push_notification_received(&unknown).await,
            PushNotificationResult::IgnoredNoOp
        );

        // `exp`: expired with no request.
        let mut exp = push.clone();
        exp.insert("exp".into(), stored.vid.to_string());
        assert_eq!(
            client.push_notification_received(&exp).await,
            PushNotificationResult::ValuesExpired
        );
        match within(20, "expired", listen.next()).await.unwrap() {
            ListenEvent::Expired(vs) => assert_eq!(vs[0].id, stored.vid),
            other => panic!("{other:?}"),
        }

        // `timeout` without `vid`: the subscription is renewed (refresh: one `{}` back).
        let mut timeout = BTreeMap::new();
        timeout.insert("timeout".to_string(), key.to_string());
        timeout.insert("to".to_string(), "cli1".to_string());
        timeout.insert("s".to_string(), client.session_id().to_string());
        assert_eq!(
            within(20, "resubscribe", client.push_notification_received(&timeout)).await,
            PushNotificationResult::ListenRefresh
        );
        assert_eq!(server.stats().subscriptions, 1);

        // A permanent put in push mode, and its reminder: re-POSTed at once.
        let pkey = InfoHash::get("pushed-permanent");
        let vid = within(
            30,
            "permanent put",
            client.put_permanent(pkey, Value::new(0, b"p".to_vec())),
        )
        .await
        .unwrap();
        let mut reminder = timeout.clone();
        reminder.insert("timeout".into(), pkey.to_string());
        reminder.insert("vid".into(), vid.to_string());
        assert_eq!(
            within(20, "put refresh", client.push_notification_received(&reminder)).await,
            PushNotificationResult::PutRefresh
        );
        assert_eq!(server.stats().permanent_puts, 1);

        // The last listen of the key dropped: unsubscribed.
        drop(listen);
        smol::Timer::after(Duration::from_millis(100)).await;
        assert_eq!(server.stats().subscriptions, 1, "one listen is left");
        drop(second);
        eventually(20, "unsubscribed", || server.stats().subscriptions == 0).await;

        server.shutdown().await;
        a.shutdown().await;
        b.shutdown().await;
    });
}
