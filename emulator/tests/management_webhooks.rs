//! Management Activity API webhook notifications against a wiremock receiver behind a local
//! HTTPS front (a certificate from the emulator's CA): validation, batched notifications on
//! the virtual clock, retries with backoff, disabling after repeated failures, expiry, stop,
//! reset, and the history in `subscriptions/notifications`. Time moves only through the
//! emulator's clock; the tests poll with short deadlines.

mod support;

use std::sync::Arc;
use std::time::Duration as StdDuration;

use m365_emulator::management::delivery::MAX_FAILURES;
use m365_emulator::management::generator::{Feed, FeedConfig};
use m365_emulator::management::wire::ContentType;
use m365_emulator::{Emulator, World};
use serde_json::{json, Value};
use support::*;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;
use wiremock::matchers::{header_exists, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

const T0: OffsetDateTime = datetime!(2030-03-01 00:00 UTC);
/// One blob an hour, so that a blob and its retries have the receiver to themselves.
const INTERVAL_SECONDS: u64 = 3600;
const AUTH_ID: &str = "o365activityapinotification";
/// How long to wait for something that must happen (or to be sure something does not).
const DEADLINE: StdDuration = StdDuration::from_secs(5);
const QUIET: StdDuration = StdDuration::from_millis(700);

/// A wiremock server behind a TLS front that the emulator trusts.
struct Receiver {
    url: String,
    mock: MockServer,
    _task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(e: &Emulator) -> Receiver {
        let mock = MockServer::start().await;
        let target = *mock.address();
        let tls = e
            .core()
            .pki
            .tls_server_config(&["127.0.0.1".to_string()])
            .expect("tls");
        let mut cfg = (*tls).clone();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let Ok(mut plain) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        let rx = Receiver {
            url: format!("https://127.0.0.1:{port}/o365/"),
            mock,
            _task: task,
        };
        rx.mount_validation().await;
        rx
    }

    /// Validation POSTs (they carry `Webhook-ValidationCode`) always get 200.
    async fn mount_validation(&self) {
        Mock::given(method("POST"))
            .and(header_exists("webhook-validationcode"))
            .respond_with(ResponseTemplate::new(200))
            .with_priority(1)
            .mount(&self.mock)
            .await;
    }

    /// Notifications get `status` (at most `times` times when given).
    async fn answer(&self, status: u16, times: Option<u64>, priority: u8) {
        let mut m = Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(status))
            .with_priority(priority);
        if let Some(n) = times {
            m = m.up_to_n_times(n);
        }
        m.mount(&self.mock).await;
    }

    async fn requests(&self, validation: bool) -> Vec<wiremock::Request> {
        self.mock
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.headers.contains_key("webhook-validationcode") == validation)
            .collect()
    }

    /// The bodies of the notification POSTs received so far.
    async fn notifications(&self) -> Vec<Value> {
        self.requests(false)
            .await
            .iter()
            .map(|r| serde_json::from_slice(&r.body).expect("JSON body"))
            .collect()
    }

    /// Waits until `n` notification POSTs arrived (panics after the deadline).
    async fn wait_for(&self, n: usize) -> Vec<Value> {
        let end = tokio::time::Instant::now() + DEADLINE;
        loop {
            let got = self.notifications().await;
            if got.len() >= n {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < end,
                "expected {n} notifications, got {}: {got:?}",
                got.len()
            );
            tokio::time::sleep(StdDuration::from_millis(25)).await;
        }
    }

    /// Gives the delivery task several ticks, then checks that exactly `n` POSTs arrived.
    async fn assert_still(&self, n: usize) {
        tokio::time::sleep(QUIET).await;
        assert_eq!(self.notifications().await.len(), n);
    }
}

struct Api {
    e: Emulator,
    c: reqwest::Client,
    feed: Feed,
}

impl Api {
    async fn start() -> Api {
        let mut world = World::default_world().expect("world");
        world.server.management.blob_interval_seconds = Some(INTERVAL_SECONDS);
        let e = start_with(Emulator::builder().key_seed(42).world(world)).await;
        e.clock().freeze();
        e.clock().set(T0);
        let c = client(&e);
        let cfg = FeedConfig {
            seed: 42,
            interval_seconds: INTERVAL_SECONDS,
            ..FeedConfig::default()
        };
        let feed = Feed::new(
            cfg,
            Uuid::parse_str(CONTOSO).expect("guid"),
            ContentType::SharePoint,
        );
        Api { e, c, feed }
    }

    fn url(&self, rest: &str) -> String {
        format!(
            "{}/api/v1.0/{CONTOSO}/activity/feed/{rest}",
            self.e.https_uri()
        )
    }

    /// A fresh token (the clock jumps by hours in these tests).
    async fn tok(&self) -> String {
        secret_token(&self.c, &self.e, CONTOSO).await
    }

    async fn get(&self, rest: &str) -> (u16, Value) {
        let tok = self.tok().await;
        let r = self
            .c
            .get(self.url(rest))
            .bearer_auth(tok)
            .send()
            .await
            .expect("sent");
        let status = r.status().as_u16();
        let text = r.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn post(&self, rest: &str, body: Option<&Value>) -> (u16, Value) {
        let tok = self.tok().await;
        let mut req = self.c.post(self.url(rest)).bearer_auth(tok);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let r = req.send().await.expect("sent");
        let status = r.status().as_u16();
        let text = r.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn subscribe(&self, hook: &Value) -> Value {
        let (s, v) = self
            .post(
                "subscriptions/start?contentType=Audit.SharePoint",
                Some(hook),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        v
    }

    async fn webhook_status(&self) -> Value {
        let (s, v) = self.get("subscriptions/list").await;
        assert_eq!(s, 200);
        v[0]["webhook"]["status"].clone()
    }

    async fn history(&self) -> Vec<Value> {
        let (s, v) = self
            .get("subscriptions/notifications?contentType=Audit.SharePoint")
            .await;
        assert_eq!(s, 200, "{v}");
        v.as_array().expect("array").clone()
    }

    /// A start time `s` and the first blob `i` created at or after it, such that blob `i + 1`
    /// comes at least 30 minutes after blob `i`.
    fn quiet_start(&self, from: OffsetDateTime) -> (OffsetDateTime, i64) {
        let mut s = from;
        loop {
            let i = self.feed.first_index_at_or_after(s);
            if self.feed.created(i + 1) - self.feed.created(i) >= Duration::minutes(30) {
                return (s, i);
            }
            s = self.feed.created(i) + Duration::nanoseconds(1);
        }
    }

    fn set(&self, t: OffsetDateTime) {
        self.e.clock().set(t);
    }
}

fn hook(rx: &Receiver) -> Value {
    json!({"webhook": {"address": rx.url, "authId": AUTH_ID, "expiration": ""}})
}

fn ms(t: OffsetDateTime) -> String {
    m365_emulator::management::wire::format_response_time(t)
}

#[tokio::test]
async fn notifications_are_batched_and_listed() {
    let api = Api::start().await;
    let rx = Receiver::start(&api.e).await;
    rx.answer(200, None, 5).await;
    let (s, i) = api.quiet_start(T0);
    api.set(s);
    let started = api.subscribe(&hook(&rx)).await;
    assert_eq!(started["webhook"]["status"], "enabled");

    // The validation POST.
    let v = rx.requests(true).await;
    assert_eq!(v.len(), 1);
    let code = v[0].headers["webhook-validationcode"]
        .to_str()
        .expect("code");
    assert_eq!(v[0].headers["webhook-authid"], AUTH_ID);
    let body: Value = serde_json::from_slice(&v[0].body).expect("json");
    assert_eq!(body, json!({"validationCode": code}));
    rx.assert_still(0).await;

    // Three blobs become available in one jump: one POST announces all three.
    let now = api.feed.created(i + 2) + Duration::seconds(1);
    assert!(api.feed.created(i + 3) > now);
    api.set(now);
    let got = rx.wait_for(1).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let req = &rx.requests(false).await[0];
    assert_eq!(req.url.path(), "/o365/");
    assert_eq!(req.headers["webhook-authid"], AUTH_ID);
    assert!(req.headers["content-type"]
        .to_str()
        .expect("ct")
        .starts_with("application/json"));
    let (st, listed) = api
        .get("subscriptions/content?contentType=Audit.SharePoint")
        .await;
    assert_eq!(st, 200);
    let listed = listed.as_array().expect("array").clone();
    assert_eq!(listed.len(), 3);
    let expected: Vec<Value> = listed
        .iter()
        .map(|e| {
            json!({
                "tenantId": CONTOSO,
                "clientId": COLLECTOR,
                "contentType": "Audit.SharePoint",
                "contentId": e["contentId"],
                "contentUri": e["contentUri"],
                "contentCreated": e["contentCreated"],
                "contentExpiration": e["contentExpiration"],
            })
        })
        .collect();
    assert_eq!(got[0], Value::Array(expected));
    // Documented key order.
    let keys: Vec<&str> = got[0][0]
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "tenantId",
            "clientId",
            "contentType",
            "contentId",
            "contentUri",
            "contentCreated",
            "contentExpiration"
        ]
    );
    // Nothing is announced twice.
    rx.assert_still(1).await;

    // The history: one successful attempt per blob.
    let history = api.history().await;
    let expected: Vec<Value> = listed
        .iter()
        .map(|e| {
            let mut e = e.clone();
            e["notificationSent"] = json!(ms(now));
            e["notificationStatus"] = json!("success");
            e
        })
        .collect();
    assert_eq!(history, expected);
    // Windows follow the content rules, on notificationSent.
    let q = |a: OffsetDateTime, b: OffsetDateTime| {
        format!(
            "subscriptions/notifications?contentType=audit.sharepoint&startTime={}&endTime={}",
            ms(a),
            ms(b)
        )
    };
    let (st, v) = api
        .get(&q(now - Duration::hours(1), now + Duration::hours(1)))
        .await;
    assert_eq!((st, v.as_array().map(Vec::len)), (200, Some(3)));
    let (st, v) = api.get(&q(now - Duration::hours(2), now)).await;
    assert_eq!((st, v), (200, json!([])));
    let (st, v) = api.get(&q(now, now - Duration::hours(1))).await;
    assert_eq!((st, &v["error"]["code"]), (400, &json!("AF20055")));
    // No subscription for the content type: AF20022.
    let (st, v) = api
        .get("subscriptions/notifications?contentType=Audit.Exchange")
        .await;
    assert_eq!((st, &v["error"]["code"]), (400, &json!("AF20022")));
    // A subscription without a webhook: an empty history.
    let (st, _) = api
        .post("subscriptions/start?contentType=Audit.General", None)
        .await;
    assert_eq!(st, 200);
    let (st, v) = api
        .get("subscriptions/notifications?contentType=Audit.General")
        .await;
    assert_eq!((st, v), (200, json!([])));
}

#[tokio::test]
async fn retries_with_backoff_until_the_receiver_answers_200() {
    let api = Api::start().await;
    let rx = Receiver::start(&api.e).await;
    rx.answer(500, Some(2), 2).await;
    rx.answer(200, None, 3).await;
    let (s, i) = api.quiet_start(T0);
    api.set(s);
    api.subscribe(&hook(&rx)).await;

    let t1 = api.feed.created(i) + Duration::seconds(1);
    api.set(t1);
    rx.wait_for(1).await;
    // The first retry comes one minute later (emulator time), not before.
    api.set(t1 + Duration::seconds(59));
    rx.assert_still(1).await;
    let t2 = t1 + Duration::minutes(1);
    api.set(t2);
    rx.wait_for(2).await;
    // The second retry two minutes after that.
    api.set(t2 + Duration::seconds(119));
    rx.assert_still(2).await;
    let t3 = t2 + Duration::minutes(2);
    api.set(t3);
    let got = rx.wait_for(3).await;
    assert!(got.iter().all(|b| b == &got[0]), "the same batch: {got:?}");
    assert_eq!(got[0].as_array().map(Vec::len), Some(1));
    // Delivered: no further attempts.
    api.set(t3 + Duration::minutes(20));
    rx.assert_still(3).await;
    assert_eq!(api.webhook_status().await, "enabled");

    let history = api.history().await;
    let seen: Vec<(&Value, &Value, &Value)> = history
        .iter()
        .map(|h| {
            (
                &h["contentId"],
                &h["notificationSent"],
                &h["notificationStatus"],
            )
        })
        .collect();
    let id = json!(api.feed.content_id(i));
    assert_eq!(
        seen,
        [
            (&id, &json!(ms(t1)), &json!("failed")),
            (&id, &json!(ms(t2)), &json!("failed")),
            (&id, &json!(ms(t3)), &json!("success")),
        ]
    );
}

#[tokio::test]
async fn webhook_is_disabled_after_repeated_failures_and_start_reenables_it() {
    let api = Api::start().await;
    let rx = Receiver::start(&api.e).await;
    rx.answer(500, None, 5).await;
    let (s, i) = api.quiet_start(T0);
    api.set(s);
    api.subscribe(&hook(&rx)).await;

    // Attempts at +0, +1, +3, +7, +15 minutes; the fifth failure disables the webhook.
    let mut t = api.feed.created(i) + Duration::seconds(1);
    api.set(t);
    rx.wait_for(1).await;
    for (n, wait) in [(2, 1), (3, 2), (4, 4), (5, 8)] {
        assert_eq!(api.webhook_status().await, "enabled");
        t += Duration::minutes(wait);
        api.set(t);
        rx.wait_for(n).await;
    }
    let end = tokio::time::Instant::now() + DEADLINE;
    while api.webhook_status().await != "disabled" {
        assert!(tokio::time::Instant::now() < end, "never disabled");
        tokio::time::sleep(StdDuration::from_millis(25)).await;
    }
    let (_, list) = api.get("subscriptions/list").await;
    assert_eq!(list[0]["status"], "enabled");
    // Disabled: neither retries nor new blobs go out.
    api.set(api.feed.created(i + 1) + Duration::minutes(40));
    rx.assert_still(MAX_FAILURES as usize).await;
    let history = api.history().await;
    assert_eq!(history.len(), MAX_FAILURES as usize);
    assert!(history.iter().all(|h| h["notificationStatus"] == "failed"));

    // `/start` with the same webhook re-enables it (after a new validation) and announces
    // blobs from then on.
    rx.mock.reset().await;
    rx.mount_validation().await;
    rx.answer(200, None, 5).await;
    let started = api.subscribe(&hook(&rx)).await;
    assert_eq!(started["webhook"]["status"], "enabled");
    assert_eq!(api.webhook_status().await, "enabled");
    assert_eq!(rx.requests(true).await.len(), 1);
    let now = api.e.clock().now();
    let j = api.feed.first_index_at_or_after(now);
    api.set(api.feed.created(j) + Duration::seconds(1));
    let got = rx.wait_for(1).await;
    assert_eq!(got[0][0]["contentId"], json!(api.feed.content_id(j)));
    assert_eq!(got[0].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn expired_webhook_gets_no_notifications() {
    let api = Api::start().await;
    let rx = Receiver::start(&api.e).await;
    rx.answer(200, None, 5).await;
    let (s, i) = api.quiet_start(T0);
    api.set(s);
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let expiration = (s + Duration::seconds(1)).format(&f).expect("format");
    api.subscribe(&json!({"webhook": {"address": rx.url, "expiration": expiration}}))
        .await;
    // The clock passes the expiration and blob i's creation in one step.
    api.set(api.feed.created(i) + Duration::seconds(2));
    assert_eq!(api.webhook_status().await, "expired");
    rx.assert_still(0).await;
    assert!(api.history().await.is_empty());
    // `/start` with no expiration re-enables it.
    let started = api
        .subscribe(&json!({"webhook": {"address": rx.url, "expiration": null}}))
        .await;
    assert_eq!(started["webhook"]["status"], "enabled");
    api.set(api.feed.created(i + 1) + Duration::seconds(1));
    let got = rx.wait_for(1).await;
    assert_eq!(got[0][0]["contentId"], json!(api.feed.content_id(i + 1)));
}

#[tokio::test]
async fn stop_and_reset_stop_deliveries_and_restart_resumes() {
    let api = Api::start().await;
    let rx = Receiver::start(&api.e).await;
    rx.answer(200, None, 5).await;
    let (s, i) = api.quiet_start(T0);
    api.set(s);
    api.subscribe(&hook(&rx)).await;
    let (st, _) = api
        .post("subscriptions/stop?contentType=Audit.SharePoint", None)
        .await;
    assert_eq!(st, 200);
    // Stopped: blob i is not announced.
    let t = api.feed.created(i) + Duration::seconds(1);
    api.set(t);
    rx.assert_still(0).await;
    let (st, v) = api
        .get("subscriptions/notifications?contentType=Audit.SharePoint")
        .await;
    assert_eq!((st, &v["error"]["code"]), (400, &json!("AF20023")));

    // Restarted: only blobs created from now on (i + 1, not i).
    api.subscribe(&hook(&rx)).await;
    api.set(api.feed.created(i + 1) + Duration::seconds(1));
    let got = rx.wait_for(1).await;
    assert_eq!(got[0].as_array().map(Vec::len), Some(1));
    assert_eq!(got[0][0]["contentId"], json!(api.feed.content_id(i + 1)));

    // Reset forgets the subscription: nothing goes out any more.
    let r = api
        .c
        .post(format!("{}/_emulator/reset", api.e.https_uri()))
        .send()
        .await
        .expect("reset");
    assert_eq!(r.status().as_u16(), 200);
    api.e.clock().freeze();
    api.set(api.feed.created(i + 3) + Duration::seconds(1));
    rx.assert_still(1).await;
    let (st, v) = api
        .get("subscriptions/notifications?contentType=Audit.SharePoint")
        .await;
    assert_eq!((st, &v["error"]["code"]), (400, &json!("AF20022")));
}

#[tokio::test]
async fn notification_history_pages_with_next_page_uri() {
    let api = Api::start().await;
    let rx = Receiver::start(&api.e).await;
    rx.answer(200, None, 5).await;
    let (s, i) = api.quiet_start(T0);
    api.set(s);
    api.subscribe(&hook(&rx)).await;
    // Five blobs in one jump: one POST, five attempts in the history.
    api.set(api.feed.created(i + 4) + Duration::seconds(1));
    rx.wait_for(1).await;
    let all = api.history().await;
    assert_eq!(all.len(), 5);

    let settings = format!("{}/_emulator/management/settings", api.e.https_uri());
    let r = api
        .c
        .patch(settings)
        .header("content-type", "application/json")
        .body(json!({"page_size": 2}).to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 200);
    let tok = api.tok().await;
    let mut url = Some(api.url("subscriptions/notifications?contentType=Audit.SharePoint"));
    let (mut pages, mut paged, mut next_uris) = (0, Vec::new(), Vec::new());
    while let Some(u) = url.take() {
        let r = api.c.get(&u).bearer_auth(&tok).send().await.expect("sent");
        assert_eq!(r.status(), 200, "{u}");
        url = r
            .headers()
            .get("NextPageUri")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        next_uris.extend(url.clone());
        let page: Value = r.json().await.expect("json");
        pages += 1;
        paged.extend(page.as_array().expect("array").iter().cloned());
    }
    assert_eq!(pages, 3);
    assert_eq!(paged, all, "the pages hold the history, in order, once");
    assert!(next_uris[0].contains("&nextPage="), "{}", next_uris[0]);

    // A nextPage that names no attempt of this window: AF20031.
    let (base, _) = next_uris[0].split_once("&nextPage=").expect("nextPage");
    for bad in ["2030010100R000000000099", "garbage"] {
        let r = api
            .c
            .get(format!("{base}&nextPage={bad}"))
            .bearer_auth(&tok)
            .send()
            .await
            .expect("sent");
        assert_eq!(r.status(), 400);
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["error"]["code"], "AF20031", "{body}");
    }
}
