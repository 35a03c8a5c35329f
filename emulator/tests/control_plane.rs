//! The control plane over real sockets: fault actions in each service's wire shape, seeded
//! schedules, client scoping, the virtual clock against tokens and assertions, the journal
//! under concurrency, reset, and bad rules.

mod support;

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use m365_emulator::jose::JwsAlg;
use serde_json::{json, Value};
use support::*;

const TEAMS_PHONE_SECRET: &str = "teams-phone-secret~0123456789abcdefghij";

async fn admin_post(client: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let resp = client
        .post(url)
        .json(&body)
        .send()
        .await
        .expect("admin request");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn redact_entra(mut v: Value) -> Value {
    for k in ["trace_id", "correlation_id", "timestamp"] {
        if v.get(k).is_some() {
            v[k] = json!(format!("[{k}]"));
        }
    }
    if let Some(uri) = v["error_uri"].as_str() {
        let path = uri
            .find("/error")
            .map(|i| uri[i..].to_string())
            .unwrap_or_default();
        v["error_uri"] = json!(format!("https://emulator{path}"));
    }
    if let Some(d) = v["error_description"].as_str() {
        let first = d.split("\r\n").next().unwrap_or_default().to_string();
        v["error_description"] = json!(format!("{first}\r\n[trace]"));
    }
    v
}

async fn collector_token_status(
    client: &reqwest::Client,
    e: &m365_emulator::Emulator,
) -> (u16, Value) {
    let (s, _, b) = post_form(
        client,
        &token_url_v2(e, CONTOSO),
        &secret_form_v2(COLLECTOR, COLLECTOR_SECRET),
    )
    .await;
    (s, b)
}

#[tokio::test]
async fn named_error_fault_comes_out_in_entra_shape_and_is_journaled() {
    let e = start().await;
    let c = client(&e);
    let (status, body) = admin_post(
        &c,
        format!("{}/_emulator/faults", e.https_uri()),
        json!({"match": {"operation": "entra.token", "client_id": COLLECTOR}, "action": {"error": "AADSTS700027"}, "schedule": {"first": 1}}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().expect("id").to_string();

    let (s1, b1) = collector_token_status(&c, &e).await;
    assert_eq!(s1, 401);
    assert_eq!(b1["error"], "invalid_client");
    assert_eq!(b1["error_codes"], json!([700027]));
    insta::assert_json_snapshot!("fault_aadsts700027", redact_entra(b1));
    let (s2, _) = collector_token_status(&c, &e).await;
    assert_eq!(s2, 200, "schedule first:1 applies once");

    let (_, _, journal) = get_json(
        &c,
        &format!("{}/_emulator/journal?operation=entra.token", e.https_uri()),
    )
    .await;
    let entries = journal.as_array().expect("array");
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["fault"], json!(id));
    assert_eq!(entries[0]["error_code"], "AADSTS700027");
    assert_eq!(entries[0]["client_id"], COLLECTOR);
    assert_eq!(entries[0]["tenant"], CONTOSO);
    assert_eq!(entries[1]["fault"], Value::Null);
    assert_eq!(entries[1]["status"], 200);
}

#[tokio::test]
async fn raw_delay_slow_body_rate_limit_and_header_actions() {
    let e = start().await;
    let c = client(&e);
    let faults = format!("{}/_emulator/faults", e.https_uri());
    let discovery = format!(
        "{}/{CONTOSO}/v2.0/.well-known/openid-configuration",
        e.https_uri()
    );

    // Raw response.
    let (s, b) = admin_post(
        &c,
        faults.clone(),
        json!({"id": "raw", "match": {"operation": "entra.discovery"}, "action": {"status": 503, "headers": {"Retry-After": "7"}, "body": {"oops": true}}, "schedule": {"nth": 1}}),
    )
    .await;
    assert_eq!((s, b), (201, json!({"id": "raw"})));
    let resp = c.get(&discovery).send().await.expect("get");
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(resp.headers()["retry-after"], "7");
    assert_eq!(
        resp.json::<Value>().await.expect("json"),
        json!({"oops": true})
    );
    assert_eq!(
        c.get(&discovery)
            .send()
            .await
            .expect("get")
            .status()
            .as_u16(),
        200
    );

    // Delay: the response still succeeds; the journal shows the time it took.
    admin_post(&c, faults.clone(), json!({"match": {"operation": "entra.keys"}, "action": {"delay_ms": 150}, "schedule": {"first": 1}})).await;
    let keys = format!("{}/common/discovery/v2.0/keys", e.https_uri());
    assert_eq!(
        c.get(&keys).send().await.expect("get").status().as_u16(),
        200
    );
    let (_, _, j) = get_json(
        &c,
        &format!("{}/_emulator/journal?operation=entra.keys", e.https_uri()),
    )
    .await;
    assert!(
        j[0]["duration_ms"].as_f64().expect("duration") >= 150.0,
        "{j}"
    );
    assert!(j[0]["fault"].as_str().is_some());

    // Slow body: the document arrives intact.
    admin_post(&c, faults.clone(), json!({"match": {"operation": "entra.keys"}, "action": {"slow_body": {"bytes_per_second": 20000}}, "schedule": {"first": 1}})).await;
    let slow: Value = c
        .get(&keys)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert!(slow["keys"].as_array().is_some_and(|k| !k.is_empty()));

    // Rate limit: Entra's 429 with Retry-After.
    admin_post(&c, faults.clone(), json!({"match": {"operation": "entra.token"}, "action": {"rate_limit": {"burst": 2, "per_second": 0.01}}})).await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..3 {
        let resp = c
            .post(token_url_v2(&e, CONTOSO))
            .form(&secret_form_v2(COLLECTOR, COLLECTOR_SECRET))
            .send()
            .await
            .expect("post");
        statuses.push(resp.status().as_u16());
        if resp.status().as_u16() == 429 {
            retry_after = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap_or_default().to_string());
            let body: Value = resp.json().await.expect("json");
            assert_eq!(body["error_codes"], json!([90055]));
        }
    }
    assert_eq!(statuses, [200, 200, 429]);
    assert_eq!(retry_after.as_deref(), Some("100"));
    // Buckets are per service and tenant: Fabrikam still has its burst.
    let (s, _, b) = post_form(
        &c,
        &token_url_v2(&e, FABRIKAM),
        &secret_form_v2(COLLECTOR, COLLECTOR_SECRET),
    )
    .await;
    assert_eq!(s, 200, "another tenant's bucket is untouched: {b}");
    let resp = c.delete(&faults).send().await.expect("delete");
    assert_eq!(resp.status().as_u16(), 204);

    // Per-request header, no global state.
    let resp = c
        .post(token_url_v2(&e, CONTOSO))
        .header("x-m365emu-fault", "AADSTS700024")
        .form(&secret_form_v2(COLLECTOR, COLLECTOR_SECRET))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 401);
    let b: Value = resp.json().await.expect("json");
    assert_eq!(b["error_codes"], json!([700024]));
    let resp = c
        .post(token_url_v2(&e, CONTOSO))
        .header("x-m365emu-fault", "AADSTS1")
        .form(&secret_form_v2(COLLECTOR, COLLECTOR_SECRET))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(collector_token_status(&c, &e).await.0, 200);
}

#[tokio::test]
async fn connection_faults_close_the_connection_without_an_answer() {
    let e = start().await;
    // HTTP/1.1 so a closed connection is visible to the client as such.
    let c = reqwest::Client::builder()
        .http1_only()
        .timeout(HTTP_TIMEOUT)
        .build()
        .expect("client");
    for kind in ["reset", "drop"] {
        let (s, _) = admin_post(
            &c,
            format!("{}/_emulator/faults", e.uri()),
            json!({"match": {"operation": "entra.discovery"}, "action": {"connection": kind}, "lifetime": {"count": 1}}),
        )
        .await;
        assert_eq!(s, 201);
        let url = format!(
            "{}/{CONTOSO}/v2.0/.well-known/openid-configuration",
            e.uri()
        );
        let err = c
            .get(&url)
            .send()
            .await
            .expect_err("connection must close without a response");
        assert!(
            err.is_request() || err.is_connect() || err.to_string().contains("connection"),
            "{kind}: {err:?}"
        );
        assert_eq!(
            c.get(&url)
                .send()
                .await
                .expect("rule used up")
                .status()
                .as_u16(),
            200
        );
    }
    let (_, _, j) = get_json(&c, &format!("{}/_emulator/faults", e.uri())).await;
    assert_eq!(j, json!([]), "count-limited rules are removed");
}

/// The statuses a seeded probabilistic rule produces for 40 token requests.
async fn seeded_sequence(c: &reqwest::Client, e: &m365_emulator::Emulator) -> Vec<u16> {
    let (s, _) = admin_post(
        c,
        format!("{}/_emulator/faults", e.https_uri()),
        json!({"match": {"operation": "entra.token", "client_id": COLLECTOR}, "action": {"error": "AADSTS90024"}, "schedule": {"probability": 0.4, "seed": 7}}),
    )
    .await;
    assert_eq!(s, 201);
    let mut out = Vec::new();
    for i in 0..40 {
        out.push(collector_token_status(c, e).await.0);
        // Another client's requests interleave and are never faulted.
        if i % 4 == 0 {
            let (s, _, b) = post_form(
                c,
                &token_url_v2(e, CONTOSO),
                &secret_form_v2(TEAMS_PHONE, TEAMS_PHONE_SECRET),
            )
            .await;
            assert_eq!(
                s, 200,
                "a rule scoped to the collector touched the Teams-phone app: {b}"
            );
        }
    }
    out
}

#[tokio::test]
async fn seeded_probability_repeats_exactly_and_stays_scoped_to_its_client() {
    let e = start().await;
    let c = client(&e);
    let first = seeded_sequence(&c, &e).await;
    let (s, _) = admin_post(
        &c,
        format!("{}/_emulator/reset", e.https_uri()),
        json!(null),
    )
    .await;
    assert_eq!(s, 200);
    let second = seeded_sequence(&c, &e).await;
    assert_eq!(first, second);
    let faulted = first.iter().filter(|s| **s == 503).count();
    assert!(faulted > 0 && faulted < 40, "{first:?}");
    assert!(first.iter().all(|s| *s == 200 || *s == 503), "{first:?}");
}

#[tokio::test]
async fn advancing_the_clock_expires_tokens_and_assertions() {
    let e = start().await;
    let c = client(&e);
    let token = secret_token(&c, &e, CONTOSO).await;
    let introspect = format!("{}/_emulator/tokens/introspect", e.https_uri());
    let (s, b) = admin_post(
        &c,
        introspect.clone(),
        json!({"token": token, "audience": [MANAGE]}),
    )
    .await;
    assert_eq!((s, &b["active"]), (200, &json!(true)), "{b}");

    // An assertion made for "now", valid 10 minutes.
    let cred = AppCredential::load(&e, COLLECTOR);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let aud = token_url_v2(&e, CONTOSO);
    let assertion = cred.sign(
        JwsAlg::RS256,
        &json!({"alg": "RS256", "typ": "JWT", "x5t": cred.x5t()}),
        &json!({"aud": aud, "iss": COLLECTOR, "sub": COLLECTOR, "jti": "j1", "iat": now, "nbf": now, "exp": now + 600}),
    );
    let (s, _, _) = post_form(&c, &aud, &assertion_form_v2(COLLECTOR, &assertion)).await;
    assert_eq!(s, 200);

    // Past the token's exp (3600 s) plus the 300 s skew.
    let (s, clock) = admin_post(
        &c,
        format!("{}/_emulator/clock", e.https_uri()),
        json!({"advance_seconds": 3600 + 301}),
    )
    .await;
    assert_eq!(s, 200, "{clock}");
    let (_, b) = admin_post(&c, introspect, json!({"token": token})).await;
    assert_eq!(b["active"], false);
    assert_eq!(b["reason"], "expired");

    // The assertion's lifetime (600 s) plus skew (300 s) is long gone.
    let (s, _, b) = post_form(&c, &aud, &assertion_form_v2(COLLECTOR, &assertion)).await;
    assert_eq!(s, 401);
    assert_eq!(b["error_codes"], json!([700024]), "{b}");

    // The clock contract: freeze, set, read.
    let (_, frozen) = admin_post(
        &c,
        format!("{}/_emulator/clock", e.https_uri()),
        json!({"freeze": true, "set": "2026-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(
        frozen,
        json!({"now": "2026-01-01T00:00:00Z", "frozen": true})
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (_, _, again) = get_json(&c, &format!("{}/_emulator/clock", e.https_uri())).await;
    assert_eq!(again, frozen);
    let (_, resumed) = admin_post(
        &c,
        format!("{}/_emulator/clock", e.https_uri()),
        json!({"freeze": false}),
    )
    .await;
    assert_eq!(resumed["frozen"], false);
}

#[tokio::test]
async fn journal_records_every_request_under_concurrency_and_keeps_its_bound() {
    for (capacity, expected) in [(5000usize, 2000usize), (300, 300)] {
        let e = start_with(
            m365_emulator::Emulator::builder()
                .key_seed(42)
                .journal_capacity(capacity),
        )
        .await;
        let c = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .build()
            .expect("client");
        let url = format!("{}/{CONTOSO}/discovery/v2.0/keys", e.uri());
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let (c, url) = (c.clone(), url.clone());
            tasks.push(tokio::spawn(async move {
                let mut ok = 0;
                for _ in 0..62 {
                    if c.get(&url)
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success())
                    {
                        ok += 1;
                    }
                }
                ok
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.expect("task");
        }
        // 32 × 62 = 1984, plus 16 more to reach 2000.
        for _ in 0..16 {
            assert!(c.get(&url).send().await.expect("get").status().is_success());
            total += 1;
        }
        assert_eq!(total, 2000);
        let q = m365_emulator::journal::JournalQuery {
            operation: Some("entra.keys".into()),
            ..Default::default()
        };
        let entries = e.journal().query(&q);
        assert_eq!(entries.len(), expected, "capacity {capacity}");
        assert!(e.journal().len() <= capacity);
        let ids: Vec<u64> = entries.iter().map(|x| x.id).collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "oldest first, no duplicates"
        );
        assert_eq!(entries.last().map(|x| x.id), Some(2000));
    }
}

#[tokio::test]
async fn journal_filters_stream_and_clear() {
    let e = start().await;
    let c = client(&e);
    // The live stream sees entries recorded after it opened.
    let mut stream = c
        .get(format!(
            "{}/_emulator/journal/stream?operation=entra.token",
            e.https_uri()
        ))
        .send()
        .await
        .expect("stream");
    assert_eq!(stream.headers()["content-type"], "application/x-ndjson");
    let (s, _, _) = post_form(
        &c,
        &token_url_v2(&e, CONTOSO),
        &secret_form_v2(COLLECTOR, "wrong"),
    )
    .await;
    assert_eq!(s, 401);
    let chunk = tokio::time::timeout(HTTP_TIMEOUT, stream.chunk())
        .await
        .expect("in time")
        .expect("chunk")
        .expect("data");
    let line: Value = serde_json::from_slice(&chunk).expect("ndjson line");
    assert_eq!(line["error_code"], "AADSTS7000215");
    assert_eq!(
        line["headers"]["content-type"],
        "application/x-www-form-urlencoded"
    );

    secret_token(&c, &e, FABRIKAM).await;
    let base = format!("{}/_emulator/journal", e.https_uri());
    let (_, _, j) = get_json(&c, &format!("{base}?operation=entra.token&status=401")).await;
    assert_eq!(j.as_array().map(Vec::len), Some(1));
    let (_, _, j) = get_json(&c, &format!("{base}?tenant={FABRIKAM}")).await;
    assert_eq!(j.as_array().map(Vec::len), Some(1));
    assert_eq!(j[0]["status"], 200);
    assert!(j[0]["token_id"].as_str().is_some());
    let (_, _, j) = get_json(&c, &format!("{base}?client_id={COLLECTOR}&limit=1")).await;
    assert_eq!(j[0]["tenant"], FABRIKAM, "limit keeps the newest");
    let (s, _, j) = get_json(&c, &format!("{base}?status=abc")).await;
    assert_eq!(s, 400);
    assert!(j["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("status")));
    let (s, _, _) = get_json(&c, &format!("{base}?since=yesterday")).await;
    assert_eq!(s, 400);
    assert_eq!(
        c.delete(&base)
            .send()
            .await
            .expect("delete")
            .status()
            .as_u16(),
        204
    );
    let (_, _, j) = get_json(&c, &format!("{base}?service=entra")).await;
    assert_eq!(j, json!([]));
}

#[tokio::test]
async fn bad_rules_are_refused_whole_with_the_field_named() {
    let e = start().await;
    let c = client(&e);
    let faults = format!("{}/_emulator/faults", e.https_uri());
    let cases = [
        (json!({"action": {"error": "AADSTS42"}}), "action.error"),
        (json!({"action": {"error": "NOPE"}}), "action.error"),
        (json!({"action": {"delay_ms": -5}}), "action"),
        (json!({"action": {"status": 99}}), "action.status"),
        (
            json!({"action": {"status": 500}, "schedule": {"probability": 7}}),
            "schedule.probability",
        ),
        (
            json!({"action": {"status": 500}, "schedule": {"nth": 0}}),
            "schedule.nth",
        ),
        (
            json!({"action": {"status": 500}, "lifetime": {"seconds": -1}}),
            "lifetime.seconds",
        ),
        (
            json!({"action": {"status": 500}, "match": {"tenant": 5}}),
            "match",
        ),
        (json!({"action": {"status": 500}, "color": "red"}), "color"),
        (json!({"match": {"operation": "entra.token"}}), "action"),
        (json!([1, 2]), "rule"),
    ];
    for (rule, field) in cases {
        let (s, b) = admin_post(&c, faults.clone(), rule.clone()).await;
        assert_eq!(s, 400, "{rule}");
        let msg = b["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(&format!("`{field}`")), "{rule}: {msg}");
    }
    // A batch with one bad rule adds none.
    let (s, _) = admin_post(
        &c,
        faults.clone(),
        json!([{"action": {"status": 500}}, {"action": {"status": 500}, "schedule": {"every": 0}}]),
    )
    .await;
    assert_eq!(s, 400);
    let (_, _, list) = get_json(&c, &faults).await;
    assert_eq!(list, json!([]));
    // Non-JSON and a negative clock advance.
    let resp = c.post(&faults).body("{nope").send().await.expect("post");
    assert_eq!(resp.status().as_u16(), 400);
    let (s, b) = admin_post(
        &c,
        format!("{}/_emulator/clock", e.https_uri()),
        json!({"advance_seconds": -3}),
    )
    .await;
    assert_eq!(s, 400);
    assert!(b["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("advance_seconds")));
    let (s, _) = admin_post(
        &c,
        format!("{}/_emulator/clock", e.https_uri()),
        json!({"set": "not a time"}),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(
        collector_token_status(&c, &e).await.0,
        200,
        "nothing was half-applied"
    );

    // With a rule active the fault layer reads form bodies for `client_id`; an oversized body
    // must still reach the token endpoint whole and get its 413.
    let (s, _) = admin_post(
        &c,
        faults.clone(),
        json!({"match": {"operation": "entra.keys"}, "action": {"status": 500}}),
    )
    .await;
    assert_eq!(s, 201);
    let big = format!(
        "grant_type=client_credentials&client_id={COLLECTOR}&pad={}",
        "a".repeat(2 * 1024 * 1024)
    );
    let resp = c
        .post(token_url_v2(&e, CONTOSO))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 413);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error_codes"], json!([9002313]));
}

#[tokio::test]
async fn reset_restores_world_faults_journal_and_clock() {
    let world_fault = json!({"id": "from-world", "match": {"operation": "entra.keys"}, "action": {"status": 500}, "schedule": {"nth": 1000}});
    let e = start_with(
        m365_emulator::Emulator::builder()
            .key_seed(42)
            .fault(world_fault),
    )
    .await;
    let c = client(&e);
    admin_post(
        &c,
        format!("{}/_emulator/faults", e.https_uri()),
        json!({"action": {"status": 418}, "match": {"operation": "entra.discovery"}}),
    )
    .await;
    admin_post(
        &c,
        format!("{}/_emulator/clock", e.https_uri()),
        json!({"advance_seconds": 86400}),
    )
    .await;
    let (s, _) = admin_post(
        &c,
        format!("{}/_emulator/reset", e.https_uri()),
        json!(null),
    )
    .await;
    assert_eq!(s, 200);
    let (_, _, faults) = get_json(&c, &format!("{}/_emulator/faults", e.https_uri())).await;
    let ids: Vec<&str> = faults
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|f| f["id"].as_str())
        .collect();
    assert_eq!(ids, ["from-world"]);
    let (_, _, clock) = get_json(&c, &format!("{}/_emulator/clock", e.https_uri())).await;
    let now: time::OffsetDateTime = time::OffsetDateTime::parse(
        clock["now"].as_str().expect("now"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("rfc3339");
    assert!((now - time::OffsetDateTime::now_utc()).abs() < time::Duration::minutes(1));
    let (_, _, journal) = get_json(&c, &format!("{}/_emulator/journal", e.https_uri())).await;
    // The reset call itself (recorded as it completes) and the two GETs after it.
    let ops: Vec<&str> = journal
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|j| j["operation"].as_str())
        .collect();
    assert_eq!(
        ops,
        ["admin.reset", "admin.faults.list", "admin.clock"],
        "{journal}"
    );
}

#[tokio::test]
async fn both_listeners_speak_http1_and_http2() {
    let e = start().await;
    let url = |base: &str| format!("{base}/_emulator/health");
    let ca = || reqwest::Certificate::from_pem(e.ca_pem().as_bytes()).expect("CA");
    // HTTPS: ALPN offers h2 and http/1.1.
    let h2 = reqwest::Client::builder()
        .tls_certs_only([ca()])
        .no_proxy()
        .build()
        .expect("client");
    let resp = h2.get(url(e.https_uri())).send().await.expect("h2");
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let h1 = reqwest::Client::builder()
        .tls_certs_only([ca()])
        .http1_only()
        .no_proxy()
        .build()
        .expect("client");
    let resp = h1.get(url(e.https_uri())).send().await.expect("h1");
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    // Plain HTTP: HTTP/1.1, and HTTP/2 with prior knowledge (h2c).
    let plain = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    assert_eq!(
        plain.get(url(e.uri())).send().await.expect("h1").version(),
        reqwest::Version::HTTP_11
    );
    let h2c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .no_proxy()
        .build()
        .expect("client");
    let resp = h2c.get(url(e.uri())).send().await.expect("h2c");
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.json::<Value>().await.expect("json")["status"], "ok");
}

#[tokio::test]
async fn token_lifetime_is_shortened_at_run_time_until_reset() {
    let e = start().await;
    let c = client(&e);
    let settings = format!("{}/_emulator/entra/settings", e.https_uri());
    let patch = |body: Value| {
        let (c, url) = (c.clone(), settings.clone());
        async move {
            let resp = c.patch(url).json(&body).send().await.expect("patch");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.expect("json"))
        }
    };
    let (_, _, before) = get_json(&c, &settings).await;
    assert_eq!(before, json!({"token_lifetime_seconds": 3600}));

    let (s, after) = patch(json!({"token_lifetime_seconds": 60})).await;
    assert_eq!((s, &after), (200, &json!({"token_lifetime_seconds": 60})));
    let (s, body) = collector_token_status(&c, &e).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["expires_in"], 59, "{body}");
    let token = body["access_token"].as_str().expect("token");
    let payload = token.split('.').nth(1).expect("payload");
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url"))
            .expect("claims");
    let lifetime = claims["exp"].as_i64().expect("exp") - claims["nbf"].as_i64().expect("nbf");
    assert_eq!(lifetime, 60 + 300, "nbf is 5 minutes early, as Entra's");

    // Out of range and unknown keys are refused, naming what is wrong; nothing changes.
    let (s, err) = patch(json!({"token_lifetime_seconds": 59})).await;
    assert_eq!(s, 400);
    insta::assert_json_snapshot!("entra_settings_out_of_range", err);
    let (s, err) = patch(json!({"lifetime": 120})).await;
    assert_eq!(s, 400);
    assert!(err["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("unknown field `lifetime`")));
    let (_, _, unchanged) = get_json(&c, &settings).await;
    assert_eq!(unchanged, after);

    let (s, _) = admin_post(&c, format!("{}/_emulator/reset", e.https_uri()), json!({})).await;
    assert_eq!(s, 200);
    let (_, body) = collector_token_status(&c, &e).await;
    assert_eq!(body["expires_in"], 3599, "{body}");
}
