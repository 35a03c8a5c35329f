//! Management Activity API knobs and admin routes over real sockets: throttling quotas, the
//! `/start` cooldown, the stop status, window variants, late / out-of-order / duplicated
//! content, records appended by an admin, admin-disabled subscriptions, `dlpSensitiveTypes`,
//! and webhook receivers outside the allowed hosts.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use m365_emulator::management::generator::{Actors, Feed};
use m365_emulator::management::knobs::Knobs;
use m365_emulator::management::wire::ContentType;
use m365_emulator::World;
use serde_json::{json, Value};
use support::management::*;
use support::*;
use time::Duration;

impl Api {
    async fn settings(&self, patch: Value) -> (u16, Value) {
        let url = format!("{}/_emulator/management/settings", self.e.https_uri());
        let r = self
            .send(
                self.c
                    .patch(url)
                    .header("content-type", "application/json")
                    .body(patch.to_string()),
            )
            .await;
        (r.status, r.json())
    }

    async fn admin(&self, method: reqwest::Method, rest: &str, body: Option<Value>) -> Resp {
        let url = format!("{}/_emulator/management/{rest}", self.e.https_uri());
        let mut req = self.c.request(method, url);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        self.send(req).await
    }

    fn content_url(&self, ct: &str) -> String {
        format!(
            "{}/subscriptions/content?contentType={ct}",
            self.feed(CONTOSO)
        )
    }

    /// Every page of a listing, following `NextPageUri`.
    async fn list_all(&self, token: &str, first: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut url = Some(first.to_string());
        while let Some(u) = url.take() {
            let r = self.get(&u, token).await;
            assert_eq!(r.status, 200, "{}", r.text);
            out.extend(r.json().as_array().cloned().unwrap_or_default());
            url = r.header("NextPageUri").map(str::to_string);
        }
        out
    }
}

fn ms(t: time::OffsetDateTime) -> String {
    m365_emulator::management::wire::format_response_time(t)
}

#[tokio::test]
async fn quotas_per_pool_per_minute_then_af429() {
    let api = Api::start().await;
    let tok = api.token(CONTOSO).await;
    let (s, _) = api.settings(json!({"throttle_per_minute": 3})).await;
    assert_eq!(s, 200);
    let list = format!("{}/subscriptions/list", api.feed(CONTOSO));
    for _ in 0..3 {
        assert_eq!(api.get(&list, &tok).await.status, 200);
    }
    let r = api.get(&list, &tok).await;
    insta::assert_json_snapshot!("af429_tenant_pool", af(&api, &r, 403, "AF429"));
    assert_eq!(
        r.header("retry-after"),
        None,
        "403 as in Microsoft's sample"
    );

    // A named publisher has its own pool; its AF429 names it.
    let publisher = "7a4b1c2d-0000-4000-8000-00000000beef";
    let with_pub = format!("{list}?PublisherIdentifier={publisher}");
    for _ in 0..3 {
        assert_eq!(api.get(&with_pub, &tok).await.status, 200);
    }
    let r = api.get(&with_pub, &tok).await;
    let body = af(&api, &r, 403, "AF429");
    assert_eq!(
        body["error"]["message"],
        format!("Too many requests. Method=ListSubscriptions, PublisherId={publisher}")
    );

    // The next minute of the emulator's clock refills the pools.
    api.e.clock().advance(Duration::seconds(60));
    assert_eq!(api.get(&list, &tok).await.status, 200);

    // 429 with Retry-After as a knob; the wait runs to the end of the minute.
    api.settings(json!({"throttle_status": 429})).await;
    api.e.clock().advance(Duration::seconds(20));
    api.get(&list, &tok).await;
    api.get(&list, &tok).await;
    let blob = format!("{}/audit/20300301000000000000000$20300301000000000000000$audit_general$Audit_General$emea0001", api.feed(CONTOSO));
    let r = api.get(&blob, &tok).await;
    let body = af(&api, &r, 429, "AF429");
    assert_eq!(
        body["error"]["message"],
        "Too many requests. Method=GetBlob, PublisherId=00000000-0000-0000-0000-000000000000"
    );
    assert_eq!(r.header("retry-after"), Some("40"));
    assert_eq!(
        journal_codes(&api, "management.content.get"),
        vec![(429, Some("AF429".into()))]
    );
}

#[tokio::test]
async fn start_cooldown_throttles_or_silently_changes_nothing() {
    let api = Api::start().await;
    let tok = api.token(CONTOSO).await;
    api.settings(json!({"start_cooldown_seconds": 900})).await;
    assert_eq!(
        api.start_sub(CONTOSO, &tok, "Audit.General").await.status,
        200
    );
    let stop = format!(
        "{}/subscriptions/stop?contentType=Audit.General",
        api.feed(CONTOSO)
    );
    assert_eq!(
        api.post(&stop, &tok).await.status,
        200,
        "stop is not limited"
    );
    let r = api.start_sub(CONTOSO, &tok, "Audit.General").await;
    insta::assert_json_snapshot!("af429_start_cooldown", af(&api, &r, 403, "AF429"));
    api.e.clock().advance(Duration::minutes(15));
    assert_eq!(
        api.start_sub(CONTOSO, &tok, "Audit.General").await.status,
        200
    );

    // Silent: "enabled" comes back, the subscription stays stopped (as observed, #479).
    api.settings(json!({"start_cooldown_mode": "silent"})).await;
    assert_eq!(api.post(&stop, &tok).await.status, 200);
    let r = api.start_sub(CONTOSO, &tok, "Audit.General").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"contentType": "Audit.General", "status": "enabled", "webhook": null})
    );
    let r = api.get(&api.content_url("Audit.General"), &tok).await;
    af(&api, &r, 400, "AF20023");
}

#[tokio::test]
async fn stop_answers_204_when_asked_to() {
    let api = Api::start().await;
    let tok = api.token(CONTOSO).await;
    api.settings(json!({"stop_status": 204})).await;
    api.start_sub(CONTOSO, &tok, "Audit.Exchange").await;
    let stop = format!(
        "{}/subscriptions/stop?contentType=Audit.Exchange",
        api.feed(CONTOSO)
    );
    let r = api.post(&stop, &tok).await;
    assert_eq!((r.status, r.text.as_str()), (204, ""));
}

#[tokio::test]
async fn default_window_variants_window_error_code_and_long_windows() {
    let api = Api::start().await;
    let t0 = api.e.clock().now();
    api.settings(json!({"backfill_seconds": 86_400, "page_size": 1000}))
        .await;
    api.e.clock().advance(Duration::minutes(30));
    let tok = api.token(CONTOSO).await;
    assert_eq!(
        api.start_sub(CONTOSO, &tok, "Audit.General").await.status,
        200
    );
    let created = |e: &Value| e["contentCreated"].as_str().unwrap_or_default().to_string();

    // Rolling 24 hours (default): with a day of backfill, 288 blobs or so.
    let rolling = api.list_all(&tok, &api.content_url("Audit.General")).await;
    assert!((285..=290).contains(&rolling.len()), "{}", rolling.len());
    // The current UTC day: only what was created since midnight.
    api.settings(json!({"default_window": "utc_day"})).await;
    let today = api.list_all(&tok, &api.content_url("Audit.General")).await;
    assert!((5..=7).contains(&today.len()), "{}", today.len());
    assert!(today.iter().all(|e| created(e) >= ms(t0)));

    // Windows over 24 hours: AF20030 when selected, or a partial 200 with only the first day.
    let long = format!(
        "{}&startTime={}&endTime={}",
        api.content_url("Audit.General"),
        ms(t0 - Duration::hours(23)),
        ms(t0 + Duration::hours(2))
    );
    api.settings(json!({"window_error_code": "AF20030"})).await;
    let r = api.get(&long, &tok).await;
    insta::assert_json_snapshot!("af20030_window_over_24_hours", af(&api, &r, 400, "AF20030"));
    api.settings(json!({"accept_long_windows": true})).await;
    let partial = api.list_all(&tok, &long).await;
    assert!(!partial.is_empty());
    assert!(partial
        .iter()
        .all(|e| created(e) < ms(t0 + Duration::hours(1))));
    assert!(partial.len() < rolling.len());
}

#[tokio::test]
async fn late_blobs_are_listed_after_their_delay_under_their_creation_time() {
    let api = Api::start().await;
    let t0 = api.e.clock().now();
    let tok = api.token(CONTOSO).await;
    api.settings(json!({"late_blob_percent": 100, "late_blob_delay_seconds": 3600}))
        .await;
    assert_eq!(
        api.start_sub(CONTOSO, &tok, "Audit.General").await.status,
        200
    );
    api.e.clock().advance(Duration::minutes(30));
    let tok = api.token(CONTOSO).await;
    assert_eq!(
        api.list_all(&tok, &api.content_url("Audit.General")).await,
        Vec::<Value>::new()
    );
    // The first blob exists but is not available yet.
    let knobs = Knobs::resolve(&Default::default(), 42);
    let feed = Feed::new(
        knobs.feed,
        CONTOSO.parse().expect("guid"),
        ContentType::General,
    );
    let first = feed.first_index_at_or_after(t0);
    let blob = format!("{}/audit/{}", api.feed(CONTOSO), feed.content_id(first));
    af(&api, &api.get(&blob, &tok).await, 404, "AF20050");

    api.e.clock().advance(Duration::hours(1));
    let tok = api.token(CONTOSO).await;
    let listed = api.list_all(&tok, &api.content_url("Audit.General")).await;
    let created: Vec<String> = listed
        .iter()
        .map(|e| e["contentCreated"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!((5..=7).contains(&listed.len()), "{created:?}");
    assert!(created
        .iter()
        .all(|c| c.as_str() < ms(t0 + Duration::minutes(30)).as_str()));
    assert_eq!(api.get(&blob, &tok).await.status, 200);
}

/// What a collector gathers in `polls` polls every 30 minutes from `t0`: windows that reach
/// back `overlap` before the previous poll; blobs kept once by contentId, records by `Id`.
/// Returns (records by Id, record copies seen, blobs fetched).
async fn collect(
    api: &Api,
    polls: i64,
    overlap: Duration,
) -> (BTreeMap<String, Value>, usize, usize) {
    let t0 = api.e.clock().now();
    let mut seen_blobs = BTreeSet::new();
    let mut records = BTreeMap::new();
    let mut copies = 0;
    let mut last = t0;
    for _ in 0..polls {
        api.e.clock().advance(Duration::minutes(30));
        let now = api.e.clock().now();
        let tok = api.token(CONTOSO).await;
        let url = format!(
            "{}&startTime={}&endTime={}",
            api.content_url("Audit.General"),
            ms(last - overlap),
            ms(now)
        );
        for entry in api.list_all(&tok, &url).await {
            let id = entry["contentId"].as_str().unwrap_or_default().to_string();
            if !seen_blobs.insert(id) {
                continue;
            }
            let uri = entry["contentUri"].as_str().unwrap_or_default();
            let r = api.get(uri, &tok).await;
            assert_eq!(r.status, 200, "{}", r.text);
            for rec in r.json().as_array().cloned().unwrap_or_default() {
                copies += 1;
                records.insert(rec["Id"].as_str().unwrap_or_default().to_string(), rec);
            }
        }
        last = now;
    }
    (records, copies, seen_blobs.len())
}

#[tokio::test]
async fn overlapping_windows_and_dedup_lose_nothing_when_blobs_are_late_out_of_order_and_repeated()
{
    let knobs = json!({
        "late_blob_percent": 25, "late_blob_delay_seconds": 3600,
        "out_of_order_percent": 30, "duplicate_percent": 25
    });
    // A careful collector: windows overlap the previous poll by 2 hours (the late delay is 1).
    let careful = Api::start().await;
    careful.settings(knobs.clone()).await;
    let t0 = careful.e.clock().now();
    let tok = careful.token(CONTOSO).await;
    careful.start_sub(CONTOSO, &tok, "Audit.General").await;
    let (got, copies, blobs) = collect(&careful, 16, Duration::hours(2)).await;

    // Expected: every record of every blob created in the first 6 hours (available by the
    // end of the 8 polled hours), computed by the generator itself.
    let world = World::default_world().expect("world");
    let tenant = world.tenant(CONTOSO).expect("contoso");
    let actors = Actors::from_world(&world, tenant);
    let section = serde_json::from_value(knobs.clone()).expect("section");
    let feed = Feed::new(
        Knobs::resolve(&section, 42).feed,
        tenant.id,
        ContentType::General,
    );
    let mut expected = BTreeSet::new();
    let mut late = 0;
    for i in feed.first_index_at_or_after(t0)..feed.first_index_at_or_after(t0 + Duration::hours(6))
    {
        late += usize::from(feed.is_late(i));
        for r in feed.records(&actors, i) {
            expected.insert(r["Id"].as_str().unwrap_or_default().to_string());
        }
    }
    assert!(late > 0, "some blobs are late");
    let got_ids: BTreeSet<String> = got.keys().cloned().collect();
    assert!(
        expected.is_subset(&got_ids),
        "missing: {:?}",
        expected.difference(&got_ids).take(5).collect::<Vec<_>>()
    );
    assert!(blobs >= 72, "{blobs}");
    assert!(
        copies > got.len(),
        "duplicates were served ({copies} copies, {} ids)",
        got.len()
    );
    // Some records are older than the blob they came in (event time is no cursor).
    let starts: usize = got
        .values()
        .filter(|r| r["CreationTime"].as_str().unwrap_or_default() < "2030-03-01T00:00:00")
        .count();
    assert!(
        starts > 0,
        "out-of-order records older than the subscription"
    );

    // A naive collector (windows end-to-end, no overlap) misses the late blobs.
    let naive = Api::start().await;
    naive.settings(knobs).await;
    let tok = naive.token(CONTOSO).await;
    naive.start_sub(CONTOSO, &tok, "Audit.General").await;
    let (naive_got, _, _) = collect(&naive, 16, Duration::ZERO).await;
    let naive_ids: BTreeSet<String> = naive_got.keys().cloned().collect();
    assert!(
        !expected.is_subset(&naive_ids),
        "late blobs must cost the naive client records"
    );
}

#[tokio::test]
async fn admin_records_land_once_in_the_next_blob() {
    let api = Api::start().await;
    let tok = api.token(CONTOSO).await;
    api.start_sub(CONTOSO, &tok, "Audit.General").await;
    let record = json!({"RecordType": 25, "Workload": "MicrosoftTeams", "Operation": "MemberAdded",
        "UserId": "adele.vance@contoso.onmicrosoft.com", "Id": "5b4a2a9c-0000-4000-8000-0000000000aa"});
    let r = api
        .admin(reqwest::Method::POST, &format!("{CONTOSO}/records"),
            Some(json!({"contentType": "audit.general", "records": [record, {"Operation": "FileDeleted"}]})))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let added = r.json();
    let generated_id = added["ids"][1]
        .as_str()
        .expect("an Id was filled in")
        .to_string();
    insta::assert_json_snapshot!("admin_records_added", added, {".ids[1]" => "[generated]"});

    api.e.clock().advance(Duration::minutes(10));
    let tok = api.token(CONTOSO).await;
    let listed = api.list_all(&tok, &api.content_url("Audit.General")).await;
    let entry = listed
        .iter()
        .find(|e| e["contentId"] == added["contentId"])
        .expect("the blob is listed");
    let blob = api
        .get(entry["contentUri"].as_str().expect("uri"), &tok)
        .await
        .json();
    let ids: Vec<&str> = blob
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|r| r["Id"].as_str())
        .collect();
    assert_eq!(
        ids.iter()
            .filter(|i| **i == "5b4a2a9c-0000-4000-8000-0000000000aa")
            .count(),
        1
    );
    assert_eq!(ids.iter().filter(|i| **i == generated_id).count(), 1);
    let filled = blob
        .as_array()
        .expect("array")
        .iter()
        .find(|r| r["Id"] == generated_id.as_str())
        .expect("record");
    assert_eq!(filled["OrganizationId"], CONTOSO);
    assert_eq!(filled["CreationTime"], "2030-03-01T00:00:00");
    // Other blobs do not carry them.
    for other in listed
        .iter()
        .filter(|e| e["contentId"] != added["contentId"])
    {
        let text = api
            .get(other["contentUri"].as_str().expect("uri"), &tok)
            .await
            .text;
        assert!(!text.contains(&generated_id));
    }
    let listed_admin = api
        .admin(reqwest::Method::GET, &format!("{CONTOSO}/records"), None)
        .await;
    assert_eq!(
        listed_admin.json()["blobs"][0]["records"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    // Bad input: the admin error shape, nothing stored.
    for (body, status) in [
        (json!({"contentType": "Audit.General", "records": "x"}), 400),
        (json!({"contentType": "Audit.General", "records": []}), 400),
        (json!({"contentType": "Audit.General", "records": [1]}), 400),
        (json!({"contentType": "Audit.Nope", "records": [{}]}), 400),
        (json!({"records": [{}]}), 400),
    ] {
        let r = api
            .admin(
                reqwest::Method::POST,
                &format!("{CONTOSO}/records"),
                Some(body.clone()),
            )
            .await;
        assert_eq!(r.status, status, "{body}: {}", r.text);
        assert_eq!(r.json()["error"]["code"], "BadRequest");
    }
    let r = api
        .admin(
            reqwest::Method::POST,
            "no-such-tenant.example/records",
            Some(json!({"contentType": "Audit.General", "records": [{}]})),
        )
        .await;
    assert_eq!(r.status, 404);
    let after = api
        .admin(reqwest::Method::GET, &format!("{CONTOSO}/records"), None)
        .await;
    assert_eq!(after.json()["blobs"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn an_admin_disabled_subscription_answers_af20023_until_restarted() {
    let api = Api::start().await;
    let tok = api.token(CONTOSO).await;
    api.start_sub(CONTOSO, &tok, "Audit.SharePoint").await;
    let r = api
        .admin(
            reqwest::Method::POST,
            &format!("{CONTOSO}/subscriptions/disable?contentType=Audit.SharePoint"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = api.get(&api.content_url("Audit.SharePoint"), &tok).await;
    af(&api, &r, 400, "AF20023");
    let subs = api
        .admin(
            reqwest::Method::GET,
            &format!("{CONTOSO}/subscriptions"),
            None,
        )
        .await
        .json();
    assert_eq!(subs["subscriptions"][0]["status"], "disabled");
    assert_eq!(
        api.start_sub(CONTOSO, &tok, "Audit.SharePoint")
            .await
            .status,
        200
    );
    assert_eq!(
        api.get(&api.content_url("Audit.SharePoint"), &tok)
            .await
            .status,
        200
    );
    let r = api
        .admin(
            reqwest::Method::POST,
            &format!("{CONTOSO}/subscriptions/disable?contentType=Audit.Exchange"),
            None,
        )
        .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn dlp_sensitive_types_with_accept_language() {
    let api = Api::start().await;
    let tok = api.token(CONTOSO).await;
    let url = format!("{}/resources/dlpSensitiveTypes", api.feed(CONTOSO));
    let r = api
        .send(
            api.c
                .get(&url)
                .bearer_auth(&tok)
                .header("accept-language", "es"),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    insta::assert_json_snapshot!("dlp_sensitive_types", r.json());
    let r = api
        .send(
            api.c
                .get(&url)
                .bearer_auth(&tok)
                .header("accept-language", "en-US,es"),
        )
        .await;
    insta::assert_json_snapshot!("af20053_two_languages", af(&api, &r, 400, "AF20053"));
    let r = api
        .send(
            api.c
                .get(&url)
                .bearer_auth(&tok)
                .header("accept-language", "en_US"),
        )
        .await;
    insta::assert_json_snapshot!("af20054_bad_language", af(&api, &r, 400, "AF20054"));
}

#[tokio::test]
async fn settings_are_validated_and_reset_restores_the_world() {
    let api = Api::start().await;
    let get = api.admin(reqwest::Method::GET, "settings", None).await;
    insta::assert_json_snapshot!("management_settings_defaults", get.json());
    for bad in [
        json!({"page_size": 0}),
        json!({"throttle_status": 500}),
        json!({"late_blob_percent": 101}),
        json!({"window_error_code": "AF20031"}),
        json!({"unknown_knob": 1}),
        json!({"webhook_allowed_hosts": ["example.com"]}),
        json!({"default_window": "yesterday"}),
    ] {
        let (s, body) = api.settings(bad.clone()).await;
        assert_eq!(s, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "BadRequest");
    }
    let (s, body) = api.settings(json!({"page_size": 0})).await;
    assert_eq!(s, 400);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .starts_with("page_size:"));
    let (_, body) = api.settings(json!({"page_size": 7})).await;
    assert_eq!(body["page_size"], 7);
    let r = api
        .send(api.c.post(format!("{}/_emulator/reset", api.e.https_uri())))
        .await;
    assert!(r.status < 300);
    let after = api
        .admin(reqwest::Method::GET, "settings", None)
        .await
        .json();
    assert_eq!(after, get.json());
}

#[tokio::test]
async fn webhooks_to_hosts_outside_the_allowed_receivers_are_refused_without_a_connection() {
    let api = Api::start().await;
    let tok = api.token(CONTOSO).await;
    let start = format!(
        "{}/subscriptions/start?contentType=Audit.General",
        api.feed(CONTOSO)
    );
    // A documentation address (RFC 2606): never contacted, refused as not validated.
    let r = api
        .post_json(
            &start,
            &tok,
            &json!({"webhook": {"address": "https://webhook.example.com/o365", "authId": "x"}}),
        )
        .await;
    insta::assert_json_snapshot!("af20021_receiver_not_allowed", af(&api, &r, 400, "AF20021"));
    let list = api
        .get(&format!("{}/subscriptions/list", api.feed(CONTOSO)), &tok)
        .await;
    assert_eq!(list.json(), json!([]), "no subscription was created");
}

#[tokio::test]
async fn requests_for_the_real_host_get_urls_on_the_real_host() {
    let api = Api::start().await;
    // A client that resolves manage.office.com to the emulator (hosts file, proxy mode): the
    // TLS leaf names the host, and contentUri / NextPageUri carry it.
    let addr = api.e.https_addr();
    let ca = reqwest::Certificate::from_pem(api.e.ca_pem().as_bytes()).expect("CA");
    let c = reqwest::Client::builder()
        .tls_certs_only([ca])
        .resolve("manage.office.com", addr)
        .no_proxy()
        .build()
        .expect("client");
    let tok = api.token(CONTOSO).await;
    let feed = format!(
        "https://manage.office.com:{}/api/v1.0/{CONTOSO}/activity/feed",
        addr.port()
    );
    let r = c
        .post(format!(
            "{feed}/subscriptions/start?contentType=Audit.General"
        ))
        .bearer_auth(&tok)
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 200);
    api.settings(json!({"page_size": 1})).await;
    api.e.clock().advance(Duration::minutes(20));
    let tok = api.token(CONTOSO).await;
    let r = c
        .get(format!(
            "{feed}/subscriptions/content?contentType=Audit.General"
        ))
        .bearer_auth(&tok)
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 200);
    let next = r.headers()["NextPageUri"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(
        next.starts_with(&format!("{feed}/subscriptions/content?")),
        "{next}"
    );
    let listed: Value = r.json().await.expect("json");
    let uri = listed[0]["contentUri"].as_str().expect("uri");
    assert!(uri.starts_with(&format!("{feed}/audit/")), "{uri}");
    let blob = c.get(uri).bearer_auth(&tok).send().await.expect("sent");
    assert_eq!(blob.status(), 200);
}

#[tokio::test]
async fn an_oversized_start_body_is_refused_and_changes_nothing() {
    let api = Api::start().await;
    let tok = api.token(CONTOSO).await;
    let start = format!(
        "{}/subscriptions/start?contentType=Audit.General",
        api.feed(CONTOSO)
    );
    let huge =
        json!({"webhook": {"address": "https://localhost/x", "authId": "a".repeat(2 << 20)}});
    let r = api.post_json(&start, &tok, &huge).await;
    assert_eq!(r.status, 413, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "RequestEntityTooLarge");
    let list = api
        .get(&format!("{}/subscriptions/list", api.feed(CONTOSO)), &tok)
        .await;
    assert_eq!(list.json(), json!([]));
}
