//! The Office 365 Management Activity API over real sockets: the 401 shape and every AF error
//! (snapshotted), subscriptions, content listing with `NextPageUri`, blobs, a 48-hour drain
//! that proves every generated record arrives exactly once, tenant isolation, webhook
//! validation against local HTTPS receivers, and property tests for the parsers.

mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use m365_emulator::management::generator::{Actors, Feed, FeedConfig};
use m365_emulator::management::wire::ContentType;
use m365_emulator::World;
use serde_json::{json, Value};
use support::management::*;
use support::*;
use time::macros::datetime;
use time::OffsetDateTime;

#[tokio::test]
async fn unauthorized_requests_get_the_asp_net_401() {
    let api = Api::start().await;
    let list = format!("{}/subscriptions/list", api.feed(CONTOSO));
    let good = api.token(CONTOSO).await;
    let graph = api
        .token_of(
            TEAMS_PHONE,
            TEAMS_PHONE_SECRET,
            "https://graph.microsoft.com/.default",
        )
        .await;
    // Change the signature's first character (it carries six full bits; the last one may
    // carry only padding bits that decoders ignore).
    let (signed, signature) = good.rsplit_once('.').expect("three parts");
    let flipped = if signature.starts_with('A') { 'B' } else { 'A' };
    let tampered = format!("{signed}.{flipped}{}", &signature[1..]);
    let cases: Vec<(&str, reqwest::RequestBuilder)> = vec![
        ("no header", api.c.get(&list)),
        (
            "not bearer",
            api.c.get(&list).header("authorization", "Basic eDp5"),
        ),
        ("garbage", api.c.get(&list).bearer_auth("not-a-jwt")),
        ("bad signature", api.c.get(&list).bearer_auth(&tampered)),
        ("wrong audience", api.c.get(&list).bearer_auth(&graph)),
    ];
    for (what, req) in cases {
        let r = api.send(req).await;
        assert_eq!(r.status, 401, "{what}");
        assert_eq!(
            r.text, r#"{"Message":"Authorization has been denied for this request."}"#,
            "{what}"
        );
        assert_eq!(r.header("content-length"), Some("61"));
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        assert_eq!(
            r.header("content-type"),
            Some("application/json; charset=utf-8")
        );
        assert_service_headers(&r);
    }
    // Expired mid-drain: an hour and a bit later the same token is refused.
    assert_eq!(api.get(&list, &good).await.status, 200);
    api.e.clock().advance(time::Duration::minutes(66));
    let r = api.get(&list, &good).await;
    assert_eq!(r.status, 401);
    insta::assert_json_snapshot!("unauthorized_401", r.json());
    assert!(journal_codes(&api, "management.subscriptions.list")
        .contains(&(401, Some("Unauthorized".into()))));
}

#[tokio::test]
async fn tenant_permission_and_publisher_errors() {
    let api = Api::start().await;
    let contoso = api.token(CONTOSO).await;
    let fabrikam = api.token(FABRIKAM).await;

    // AF20013: the URL names a domain, not a GUID.
    let r = api
        .get(
            &format!("{}/subscriptions/list", api.feed(CONTOSO_DOMAIN)),
            &contoso,
        )
        .await;
    insta::assert_json_snapshot!("af20013_tenant_not_a_guid", af(&api, &r, 400, "AF20013"));

    // AF20010: tenant isolation. A Contoso token never reads Fabrikam's feed, on any route.
    assert_eq!(
        api.start_sub(FABRIKAM, &fabrikam, "Audit.General")
            .await
            .status,
        200
    );
    let fab = api.feed(FABRIKAM);
    let urls = [
        format!("{fab}/subscriptions/list"),
        format!("{fab}/subscriptions/content?contentType=Audit.General"),
        format!("{fab}/audit/20300301000000000000000$20300301000100000000000$audit_general$Audit_General$na0001"),
    ];
    for url in &urls {
        let r = api.get(url, &contoso).await;
        af(&api, &r, 401, "AF20010");
    }
    for op in ["start", "stop"] {
        let r = api
            .post(
                &format!("{fab}/subscriptions/{op}?contentType=Audit.General"),
                &contoso,
            )
            .await;
        let body = af(&api, &r, 401, "AF20010");
        if op == "start" {
            insta::assert_json_snapshot!("af20010_token_of_another_tenant", body);
        }
    }

    // AF10001: a token without ActivityFeed.Read (the Teams-phone app has no Management roles).
    let no_roles = api
        .token_of(
            TEAMS_PHONE,
            TEAMS_PHONE_SECRET,
            &format!("{MANAGE}/.default"),
        )
        .await;
    let r = api
        .get(
            &format!("{}/subscriptions/list", api.feed(CONTOSO)),
            &no_roles,
        )
        .await;
    insta::assert_json_snapshot!(
        "af10001_no_activity_feed_read",
        af(&api, &r, 401, "AF10001")
    );
    // … and DLP.All without ActivityFeed.ReadDlp (Fabrikam granted ActivityFeed.Read only).
    let r = api.start_sub(FABRIKAM, &fabrikam, "DLP.All").await;
    insta::assert_json_snapshot!("af10001_dlp_without_read_dlp", af(&api, &r, 401, "AF10001"));
    assert_eq!(
        api.start_sub(CONTOSO, &contoso, "DLP.All").await.status,
        200
    );

    // AF20002: a non-GUID publisher (ddbnl#11); any case, duplicates of GUIDs are fine.
    let list = format!("{}/subscriptions/list", api.feed(CONTOSO));
    let r = api
        .get(&format!("{list}?PublisherIdentifier=TEST365LOGS"), &contoso)
        .await;
    insta::assert_json_snapshot!("af20002_publisher_not_a_guid", af(&api, &r, 400, "AF20002"));
    let r = api
        .get(
            &format!("{list}?publisherIdentifier={CONTOSO}&PUBLISHERIDENTIFIER={FABRIKAM}&PublisherIdentity=x&unknown=1"),
            &contoso,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = api
        .get(
            &format!("{list}?PublisherIdentifier={CONTOSO}&publisheridentifier=nope"),
            &contoso,
        )
        .await;
    af(&api, &r, 400, "AF20002");
}

#[tokio::test]
async fn subscriptions_start_stop_list_and_their_errors() {
    let api = Api::start().await;
    let tok = api.token(CONTOSO).await;
    let feed = api.feed(CONTOSO);
    let list = format!("{feed}/subscriptions/list");

    let r = api.get(&list, &tok).await;
    assert_eq!((r.status, r.text.as_str()), (200, "[]"));
    assert_service_headers(&r);

    // Missing and unknown content types.
    let r = api.post(&format!("{feed}/subscriptions/start"), &tok).await;
    insta::assert_json_snapshot!("af20001_missing_content_type", af(&api, &r, 400, "AF20001"));
    let r = api.start_sub(CONTOSO, &tok, "Audit.Teams").await;
    insta::assert_json_snapshot!("af20020_unknown_content_type", af(&api, &r, 400, "AF20020"));
    // Stop and content before any subscription.
    let r = api
        .post(
            &format!("{feed}/subscriptions/stop?contentType=Audit.Exchange"),
            &tok,
        )
        .await;
    insta::assert_json_snapshot!("af20022_no_subscription", af(&api, &r, 400, "AF20022"));
    let r = api
        .get(
            &format!("{feed}/subscriptions/content?contentType=Audit.Exchange"),
            &tok,
        )
        .await;
    af(&api, &r, 400, "AF20022");

    // Start echoes the caller's casing (MicrosoftDocs#479); the name of the parameter is
    // case-insensitive too.
    let r = api
        .post(
            &format!("{feed}/subscriptions/start?CONTENTTYPE=Audit.Sharepoint&PublisherIdentifier={CONTOSO}"),
            &tok,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_service_headers(&r);
    assert_eq!(
        r.text,
        r#"{"contentType":"Audit.Sharepoint","status":"enabled","webhook":null}"#
    );
    // Already enabled, nothing to change: the observed 97-byte AF20024.
    let r = api.start_sub(CONTOSO, &tok, "audit.sharepoint").await;
    assert_eq!(r.text.len(), 97);
    insta::assert_json_snapshot!("af20024_already_enabled", af(&api, &r, 400, "AF20024"));

    // Every body clients send without a webhook is tolerated.
    let start_ex = format!("{feed}/subscriptions/start?contentType=Audit.Exchange");
    let stop_ex = format!("{feed}/subscriptions/stop?contentType=Audit.Exchange");
    let bodies: Vec<(Option<&str>, &str)> = vec![
        (None, ""),
        (Some("application/json"), "\"\""),
        (Some("application/json"), "{}"),
        (Some("application/json"), "null"),
        (Some("application/x-www-form-urlencoded"), "a=b"),
        (Some("application/json"), r#"{"unknown":1,"webhook":null}"#),
        (
            Some("application/json"),
            r#"{"address":"","authId":"O365ActivityAPINotification","expiration":""}"#,
        ),
        (Some("text/plain"), "not json at all"),
    ];
    for (ct, body) in bodies {
        let mut req = api
            .c
            .post(&start_ex)
            .bearer_auth(&tok)
            .body(body.to_string());
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        let r = api.send(req).await;
        assert_eq!(r.status, 200, "{ct:?} {body:?}: {}", r.text);
        assert_eq!(r.json()["webhook"], Value::Null);
        // Stop answers 200 with an empty body.
        let r = api.post(&stop_ex, &tok).await;
        assert_eq!((r.status, r.text.as_str()), (200, ""));
        assert_service_headers(&r);
    }
    // Stopped: stop again and content say AF20023; /list keeps it as disabled.
    let r = api.post(&stop_ex, &tok).await;
    insta::assert_json_snapshot!(
        "af20023_subscription_disabled",
        af(&api, &r, 400, "AF20023")
    );
    let r = api
        .get(
            &format!("{feed}/subscriptions/content?contentType=Audit.Exchange"),
            &tok,
        )
        .await;
    af(&api, &r, 400, "AF20023");
    let r = api.get(&list, &tok).await;
    insta::assert_json_snapshot!("subscriptions_list", r.json());
    assert_eq!(
        r.text,
        r#"[{"contentType":"Audit.Exchange","status":"disabled","webhook":null},{"contentType":"Audit.SharePoint","status":"enabled","webhook":null}]"#
    );
    // /api/v1/ (the docs' NextPageUri sample) serves the same feed.
    let v1 = format!(
        "{}/api/v1/{CONTOSO}/activity/feed/subscriptions/list",
        api.e.https_uri()
    );
    assert_eq!(api.get(&v1, &tok).await.text, r.text);
    // Wrong method: ASP.NET's 405.
    let r = api.post(&list, &tok).await;
    assert_eq!(r.status, 405);
    assert_eq!(
        r.json(),
        json!({"Message": "The requested resource does not support http method 'POST'."})
    );
    // Reset forgets every subscription.
    let resp = api
        .c
        .post(format!("{}/_emulator/reset", api.e.https_uri()))
        .send()
        .await
        .expect("reset");
    assert_eq!(resp.status().as_u16(), 200);
    api.e.clock().freeze();
    api.e.clock().set(T0);
    let tok = api.token(CONTOSO).await;
    assert_eq!(api.get(&list, &tok).await.text, "[]");
    assert!(journal_codes(&api, "management.subscriptions.list").contains(&(200, None)));
}

#[tokio::test]
async fn audit_logging_off_or_unknown_tenant_gives_the_mangled_start_error() {
    let mut world = World::default_world().expect("world");
    world.tenants[1].audit_logging = false; // Fabrikam
    let api = Api::with_world(world).await;
    let fabrikam = api.token(FABRIKAM).await;
    let r = api
        .post(
            &format!(
                "{}/subscriptions/start?contentType=Audit.General&PublisherIdentifier={CONTOSO}",
                api.feed(FABRIKAM)
            ),
            &fabrikam,
        )
        .await;
    assert_eq!(r.status, 400);
    assert_service_headers(&r);
    let mut body = r.json();
    let code = body["error"]["code"].as_str().expect("code").to_string();
    let message = body["error"]["message"]
        .as_str()
        .expect("message")
        .to_string();
    let (head, tail) = code.split_once("][TenantId=").expect("CorrId part");
    uuid::Uuid::parse_str(
        head.strip_prefix("StartSubscription [CorrId=")
            .expect("prefix"),
    )
    .expect("CorrId is a GUID");
    assert_eq!(
        tail,
        format!("{FABRIKAM},ContentType=Audit.General,ApplicationId={COLLECTOR},PublisherId={CONTOSO}][AppId")
    );
    // The application id lost its first character to the split.
    assert!(message.starts_with(&format!("{}] failed. Exception: Microsoft.Office.Compliance.Audit.DataServiceException: Tenant {FABRIKAM} does not exist.\r\n   at ", &COLLECTOR[1..])), "{message}");
    body["error"]["code"] = json!(code.replace(head, "StartSubscription [CorrId=[guid]"));
    insta::assert_json_snapshot!("start_subscription_audit_logging_off", body);
    assert_eq!(
        api.get(
            &format!("{}/subscriptions/list", api.feed(FABRIKAM)),
            &fabrikam
        )
        .await
        .text,
        "[]"
    );

    // A tenant the audit service does not know (Wazuh put its client id there, wazuh#19252):
    // /start gets the same error, the other operations AF20010.
    let contoso = api.token(CONTOSO).await;
    let r = api.start_sub(COLLECTOR, &contoso, "Audit.Exchange").await;
    assert_eq!(r.status, 400);
    let code = r.json()["error"]["code"]
        .as_str()
        .expect("code")
        .to_string();
    assert!(code.contains(&format!("[TenantId={COLLECTOR},ContentType=Audit.Exchange,ApplicationId={COLLECTOR},PublisherId=00000000-0000-0000-0000-000000000000][AppId")), "{code}");
    let r = api
        .get(
            &format!("{}/subscriptions/list", api.feed(COLLECTOR)),
            &contoso,
        )
        .await;
    af(&api, &r, 401, "AF20010");
}

/// Every entry of a content page, checked against the window and the response conventions.
fn check_page(
    api: &Api,
    r: &Resp,
    ct: &str,
    start: OffsetDateTime,
    end: OffsetDateTime,
) -> Vec<Value> {
    assert_eq!(r.status, 200, "{}", r.text);
    assert_service_headers(r);
    assert_eq!(r.text, r.json().to_string(), "compact JSON");
    let entries = r.json().as_array().expect("array").clone();
    let rfc = time::format_description::well_known::Rfc3339;
    for e in &entries {
        let keys: Vec<&str> = e
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "contentType",
                "contentId",
                "contentUri",
                "contentCreated",
                "contentExpiration"
            ]
        );
        assert_eq!(e["contentType"], ct);
        let created = e["contentCreated"].as_str().expect("created");
        assert_eq!(created.len(), 24, "{created}");
        let created_t = OffsetDateTime::parse(created, &rfc).expect("datetime");
        assert!(
            created_t >= start && created_t < end,
            "{created} outside the window"
        );
        let expires = OffsetDateTime::parse(e["contentExpiration"].as_str().expect("exp"), &rfc)
            .expect("datetime");
        assert_eq!(expires - created_t, time::Duration::days(7));
        let id = e["contentId"].as_str().expect("id");
        assert_eq!(
            e["contentUri"],
            format!(
                "{}/api/v1.0/{CONTOSO}/activity/feed/audit/{id}",
                api.e.https_uri()
            )
        );
        let lower = ct.replace('.', "_");
        assert!(
            id.contains(&format!("${}${lower}$", lower.to_ascii_lowercase())),
            "{id}"
        );
    }
    entries
}

#[tokio::test]
async fn drain_48_hours_every_record_exactly_once() {
    let mut world = World::default_world().expect("world");
    world.server.management.page_size = Some(50);
    world.server.management.records_per_blob = Some(7);
    let api = Api::with_world(world.clone()).await;
    let tok = api.token(CONTOSO).await;
    let cts = ["Audit.General", "Audit.AzureActiveDirectory"];
    for ct in cts {
        assert_eq!(api.start_sub(CONTOSO, &tok, ct).await.status, 200);
    }
    api.e.clock().advance(time::Duration::hours(48));
    let tok = api.token(CONTOSO).await;
    let feed = api.feed(CONTOSO);
    let mut pages = 0;
    let mut seen_ids: Vec<String> = Vec::new();
    let mut blobs = 0;
    for ct in cts {
        let mut listed: Vec<Value> = Vec::new();
        for day in 0..2 {
            let start = T0 + time::Duration::days(day);
            let end = start + time::Duration::days(1);
            let fmt = |t: OffsetDateTime| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .expect("fmt")
            };
            let mut url = format!(
                "{feed}/subscriptions/content?contentType={ct}&startTime={}&endTime={}&PublisherIdentifier={CONTOSO}",
                fmt(start),
                fmt(end)
            );
            loop {
                let r = api.get(&url, &tok).await;
                pages += 1;
                listed.extend(check_page(&api, &r, ct, start, end));
                match r.header("NextPageUri") {
                    Some(next) => {
                        assert!(
                            next.starts_with(&format!(
                                "{feed}/subscriptions/content?contentType={ct}&startTime="
                            )),
                            "{next}"
                        );
                        assert!(next.contains("&nextPage="), "{next}");
                        url = next.to_string();
                    }
                    None => break,
                }
            }
        }
        // 288 blobs a day, in order, no repeats.
        assert_eq!(listed.len(), 576, "{ct}");
        let created: Vec<&str> = listed
            .iter()
            .map(|e| e["contentCreated"].as_str().expect("c"))
            .collect();
        assert!(
            created.windows(2).all(|w| w[0] < w[1]),
            "ascending contentCreated"
        );
        for e in &listed {
            let r = api.get(e["contentUri"].as_str().expect("uri"), &tok).await;
            assert_eq!(r.status, 200, "{}", r.text);
            assert_service_headers(&r);
            blobs += 1;
            let created = &e["contentCreated"].as_str().expect("c")[..19];
            for rec in r.json().as_array().expect("records") {
                assert_eq!(rec["OrganizationId"], CONTOSO);
                let t = rec["CreationTime"].as_str().expect("CreationTime");
                assert_eq!(t.len(), 19, "zone-less seconds: {t}");
                assert!(t < created, "events precede their blob: {t} vs {created}");
                seen_ids.push(rec["Id"].as_str().expect("Id").to_string());
            }
        }
    }
    assert_eq!(
        pages,
        2 * 2 * 6,
        "ceil(288 / 50) pages a day per content type"
    );
    assert_eq!(blobs, 1152);

    // What the generator made for those 48 hours, computed independently of the HTTP path.
    let cfg = FeedConfig {
        seed: 42,
        interval_seconds: 300,
        records_per_blob: 7,
        shape: Default::default(),
    };
    let tenant = world.tenant(CONTOSO).expect("contoso");
    let actors = Actors::from_world(&world, tenant);
    let mut expected: BTreeSet<String> = BTreeSet::new();
    for ct in [ContentType::General, ContentType::AzureActiveDirectory] {
        let feed = Feed::new(cfg, tenant.id, ct);
        let (first, end) = (
            feed.first_index_at_or_after(T0),
            feed.first_index_at_or_after(T0 + time::Duration::hours(48)),
        );
        for i in first..end {
            for r in feed.records(&actors, i) {
                expected.insert(r["Id"].as_str().expect("Id").to_string());
            }
        }
    }
    assert_eq!(expected.len(), 2 * 576 * 7);
    let unique: BTreeSet<String> = seen_ids.iter().cloned().collect();
    assert_eq!(seen_ids.len(), unique.len(), "no record arrived twice");
    assert_eq!(unique, expected, "every generated record arrived");
}

#[tokio::test]
async fn content_windows_paging_and_their_errors() {
    let mut world = World::default_world().expect("world");
    world.server.management.page_size = Some(10);
    let api = Api::with_world(world).await;
    let tok = api.token(CONTOSO).await;
    assert_eq!(
        api.start_sub(CONTOSO, &tok, "Audit.General").await.status,
        200
    );
    api.e.clock().advance(time::Duration::hours(3));
    let tok = api.token(CONTOSO).await;
    let content = format!(
        "{}/subscriptions/content?contentType=Audit.General",
        api.feed(CONTOSO)
    );

    // Default window (the 24 h before the request): only blobs since the subscription,
    // 36 in three hours, pages of ten carrying the defaulted window.
    let r = api.get(&content, &tok).await;
    let first = check_page(&api, &r, "Audit.General", T0, T0 + time::Duration::hours(3));
    assert_eq!(first.len(), 10);
    insta::assert_json_snapshot!("content_first_entry", redact_origin(&first[0], &api.e));
    let next = r.header("nextpageuri").expect("NextPageUri").to_string();
    let defaulted = redact_origin(&json!(next), &api.e);
    insta::assert_json_snapshot!("content_next_page_uri_default_window", defaulted);
    assert!(
        next.contains(
            "&startTime=2030-02-28T03:00:00.000Z&endTime=2030-03-01T03:00:00.000Z&nextPage="
        ),
        "{next}"
    );
    let mut all = first.clone();
    let mut url = next;
    loop {
        let r = api.get(&url, &tok).await;
        all.extend(check_page(
            &api,
            &r,
            "Audit.General",
            T0,
            T0 + time::Duration::hours(3),
        ));
        match r.header("NextPageUri") {
            Some(n) => url = n.to_string(),
            None => break,
        }
    }
    assert_eq!(all.len(), 36);
    // A window reaching before the subscription starts at the subscription.
    let r = api
        .get(
            &format!("{content}&startTime=2030-02-28T12:00&endTime=2030-03-01T01:00"),
            &tok,
        )
        .await;
    assert_eq!(
        check_page(&api, &r, "Audit.General", T0, T0 + time::Duration::hours(1)).len(),
        10
    );

    // Accepted datetime forms; a future end.
    for (s, e) in [
        ("2030-03-01", "2030-03-02"),
        ("2030-03-01T00:00", "2030-03-01T01:00"),
        ("2030-03-01T00:00:00Z", "2030-03-01T01:00:00.5Z"),
        ("2030-03-01T00:00:00.123456", "2030-03-01T01:00:00"),
        ("2030-03-01T01:00:00%2B01:00", "2030-03-01T01:00:00Z"),
        ("2030-03-05", "2030-03-06"),
    ] {
        let r = api
            .get(&format!("{content}&StartTime={s}&ENDTIME={e}"), &tok)
            .await;
        assert_eq!(r.status, 200, "{s} {e}: {}", r.text);
    }

    // AF20055: one of the two, more than 24 h, reversed, equal, older than 7 days + 1 h.
    api.e.clock().advance(time::Duration::days(7));
    let tok = api.token(CONTOSO).await; // now = T0 + 7 d 3 h
    let mut first_af20055 = None;
    for q in [
        "&startTime=2030-03-07",
        "&endTime=2030-03-07",
        "&startTime=2030-03-06&endTime=2030-03-07T00:00:01",
        "&startTime=2030-03-07&endTime=2030-03-06",
        "&startTime=2030-03-07&endTime=2030-03-07",
        "&startTime=2030-03-01T01:59:59&endTime=2030-03-01T03:00",
    ] {
        let r = api.get(&format!("{content}{q}"), &tok).await;
        let body = af(&api, &r, 400, "AF20055");
        first_af20055.get_or_insert(body);
    }
    insta::assert_json_snapshot!("af20055_invalid_window", first_af20055.expect("one"));
    // 7 days + 1 hour of slack is still fine.
    let r = api
        .get(
            &format!("{content}&startTime=2030-03-01T02:00:01&endTime=2030-03-01T03:00"),
            &tok,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // AF20002: unparsable datetimes, including a '+' offset sent unencoded (a space).
    let raw =
        format!("{content}&startTime=2030-03-07T00:00:00+00:00&endTime=2030-03-07T01:00:00+00:00");
    let r = api.get(&raw, &tok).await;
    insta::assert_json_snapshot!(
        "af20002_start_time_plus_as_space",
        af(&api, &r, 400, "AF20002")
    );
    for q in [
        "&startTime=yesterday&endTime=2030-03-07",
        "&startTime=2030-03-07&endTime=07/03/2030",
    ] {
        af(
            &api,
            &api.get(&format!("{content}{q}"), &tok).await,
            400,
            "AF20002",
        );
    }

    // AF20031: garbage, a page outside the window, a huge index, a wrong hour prefix.
    let w = "&startTime=2030-03-07T00:00&endTime=2030-03-07T12:00";
    let mut snap = None;
    let inside = datetime!(2030-03-07 01:00 UTC).unix_timestamp() / 300;
    let wrong_hour = format!("1999010100R{inside:012}");
    for token in [
        "garbage",
        "2030030700R000000000001",
        "2030030700R999999999999999999",
        &wrong_hour,
    ] {
        let r = api
            .get(&format!("{content}{w}&nextPage={token}"), &tok)
            .await;
        let body = af(&api, &r, 400, "AF20031");
        snap.get_or_insert(body);
    }
    insta::assert_json_snapshot!("af20031_invalid_next_page", snap.expect("one"));
}

#[tokio::test]
async fn blobs_their_errors_and_tenant_isolation() {
    let api = Api::start().await;
    let contoso = api.token(CONTOSO).await;
    let fabrikam = api.token(FABRIKAM).await;
    assert_eq!(
        api.start_sub(CONTOSO, &contoso, "Audit.Exchange")
            .await
            .status,
        200
    );
    assert_eq!(
        api.start_sub(CONTOSO, &contoso, "DLP.All").await.status,
        200
    );
    assert_eq!(
        api.start_sub(FABRIKAM, &fabrikam, "Audit.Exchange")
            .await
            .status,
        200
    );
    api.e.clock().advance(time::Duration::hours(1));
    let contoso = api.token(CONTOSO).await;
    let fabrikam = api.token(FABRIKAM).await;
    let feed = api.feed(CONTOSO);
    let r = api
        .get(
            &format!("{feed}/subscriptions/content?contentType=Audit.Exchange"),
            &contoso,
        )
        .await;
    let entries = check_page(
        &api,
        &r,
        "Audit.Exchange",
        T0,
        T0 + time::Duration::hours(1),
    );
    assert_eq!(entries.len(), 12);
    let uri = entries[0]["contentUri"].as_str().expect("uri").to_string();
    let id = entries[0]["contentId"].as_str().expect("id").to_string();

    let r = api.get(&uri, &contoso).await;
    assert_eq!(r.status, 200);
    assert_service_headers(&r);
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(r.text, r.json().to_string(), "compact JSON");
    let records = r.json();
    assert_eq!(records.as_array().map(Vec::len), Some(20));
    insta::assert_json_snapshot!("blob_exchange_first_record", records[0]);
    // `%24` is accepted for `$`; the same blob comes back.
    let encoded = uri.replace('$', "%24");
    assert_eq!(api.get(&encoded, &contoso).await.text, r.text);

    // DLP records are there for a token with ActivityFeed.ReadDlp.
    let r = api
        .get(
            &format!("{feed}/subscriptions/content?contentType=DLP.All"),
            &contoso,
        )
        .await;
    let dlp = check_page(&api, &r, "DLP.All", T0, T0 + time::Duration::hours(1));
    let r = api
        .get(dlp[0]["contentUri"].as_str().expect("uri"), &contoso)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json()[0]["PolicyDetails"].is_array());

    // AF20052: malformed ids.
    let mut snap = None;
    for bad in [
        "nonsense",
        "a$b$c",
        "20300301000000000000000$x$audit_exchange$Audit_Exchange$na0001",
        "%zz",
    ] {
        let r = api.get(&format!("{feed}/audit/{bad}"), &contoso).await;
        snap.get_or_insert(af(&api, &r, 400, "AF20052"));
    }
    insta::assert_json_snapshot!("af20052_malformed_content_id", snap.expect("one"));

    // AF20050: well-formed but unknown — another creation time, a blob from the future, and
    // Contoso's blob asked for under Fabrikam (with Fabrikam's own token).
    let mut parts: Vec<String> = id.split('$').map(str::to_string).collect();
    let last = if parts[1].ends_with('1') { '2' } else { '1' };
    parts[1] = format!("{}{last}", &parts[1][..22]);
    let r = api
        .get(&format!("{feed}/audit/{}", parts.join("$")), &contoso)
        .await;
    insta::assert_json_snapshot!("af20050_unknown_content", af(&api, &r, 404, "AF20050"));
    let future =
        "20300302000000000000000$20300302000500000000000$audit_exchange$Audit_Exchange$na0001";
    af(
        &api,
        &api.get(&format!("{feed}/audit/{future}"), &contoso).await,
        404,
        "AF20050",
    );
    let r = api
        .get(&format!("{}/audit/{id}", api.feed(FABRIKAM)), &fabrikam)
        .await;
    af(&api, &r, 404, "AF20050");
    // And a Fabrikam token cannot use Contoso's contentUri at all.
    af(&api, &api.get(&uri, &fabrikam).await, 401, "AF20010");
    // AF20022: a blob of a content type without a subscription.
    let general = id.replace(
        "audit_exchange$Audit_Exchange",
        "audit_general$Audit_General",
    );
    af(
        &api,
        &api.get(&format!("{feed}/audit/{general}"), &contoso).await,
        400,
        "AF20022",
    );

    // AF20051: eight days later the blob has expired; the listing no longer offers it.
    api.e.clock().advance(time::Duration::days(8));
    let contoso = api.token(CONTOSO).await;
    let r = api.get(&uri, &contoso).await;
    insta::assert_json_snapshot!("af20051_expired_content", af(&api, &r, 400, "AF20051"));
    // After stop, content is not retrievable (AF20023).
    let r = api
        .post(
            &format!("{feed}/subscriptions/stop?contentType=DLP.All"),
            &contoso,
        )
        .await;
    assert_eq!(r.status, 200);
    let r = api
        .get(dlp[1]["contentUri"].as_str().expect("uri"), &contoso)
        .await;
    af(&api, &r, 400, "AF20023");
}

// ---------------------------------------------------------------------------------------------
// Webhooks: local HTTPS receivers.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Seen {
    headers: http::HeaderMap,
    body: String,
}

/// A local HTTPS receiver answering `status`; records what it receives.
struct Receiver {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    status: Arc<std::sync::atomic::AtomicU16>,
    _task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(tls: Arc<rustls::ServerConfig>) -> Receiver {
        use hyper_util::rt::{TokioExecutor, TokioIo};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let status = Arc::new(std::sync::atomic::AtomicU16::new(200));
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let (seen2, status2) = (seen.clone(), status.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, seen, status) = (acceptor.clone(), seen2.clone(), status2.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let (seen, status) = (seen.clone(), status.clone());
                            async move {
                                use http_body_util::BodyExt;
                                let (parts, body) = req.into_parts();
                                let bytes = body
                                    .collect()
                                    .await
                                    .map(|c| c.to_bytes())
                                    .unwrap_or_default();
                                seen.lock().expect("lock").push(Seen {
                                    headers: parts.headers,
                                    body: String::from_utf8_lossy(&bytes).into_owned(),
                                });
                                let code = status.load(std::sync::atomic::Ordering::SeqCst);
                                let mut resp = http::Response::new(http_body_util::Full::new(
                                    bytes::Bytes::new(),
                                ));
                                *resp.status_mut() =
                                    http::StatusCode::from_u16(code).expect("status");
                                Ok::<_, std::convert::Infallible>(resp)
                            }
                        },
                    );
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        Receiver {
            url: format!("https://127.0.0.1:{port}/o365/"),
            seen,
            status,
            _task: task,
        }
    }

    fn set_status(&self, code: u16) {
        self.status.store(code, std::sync::atomic::Ordering::SeqCst);
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }
}

/// A CA the emulator does not know, and a server config for 127.0.0.1 it issued.
fn foreign_ca() -> (String, Arc<rustls::ServerConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "receiver test CA");
    let ca_cert = ca.self_signed(&ca_key).expect("ca");
    let issuer = Issuer::from_ca_cert_der(ca_cert.der(), ca_key).expect("issuer");
    let key = KeyPair::generate().expect("leaf key");
    let mut leaf = CertificateParams::new(Vec::<String>::new()).expect("params");
    leaf.subject_alt_names = vec![SanType::IpAddress("127.0.0.1".parse().expect("ip"))];
    let cert = leaf.signed_by(&key, &issuer).expect("leaf");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .expect("server config");
    (ca_cert.pem(), Arc::new(cfg))
}

#[tokio::test]
async fn webhook_validation_against_local_receivers() {
    let api = Api::start().await;
    let tok = api.token(CONTOSO).await;
    let feed = api.feed(CONTOSO);
    let start = format!("{feed}/subscriptions/start?contentType=Audit.SharePoint");
    let list = format!("{feed}/subscriptions/list");

    // A receiver with a certificate from the emulator's own CA: trusted out of the box.
    let tls = api
        .e
        .core()
        .pki
        .tls_server_config(&["127.0.0.1".to_string()])
        .expect("tls");
    let rx = Receiver::start(tls).await;
    let hook = json!({"webhook": {"address": rx.url, "authId": "o365activityapinotification", "expiration": ""}});
    let r = api.post_json(&start, &tok, &hook).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut started = r.json();
    assert_eq!(started["webhook"]["address"], rx.url);
    started["webhook"]["address"] = json!("https://receiver/o365/");
    insta::assert_json_snapshot!("start_with_webhook", started);
    let seen = rx.seen();
    assert_eq!(seen.len(), 1, "exactly one validation POST");
    let v = &seen[0];
    let code = v.headers["webhook-validationcode"].to_str().expect("code");
    assert!(!code.is_empty());
    assert_eq!(v.headers["webhook-authid"], "o365activityapinotification");
    assert_eq!(v.headers["content-type"], "application/json; charset=utf-8");
    assert_eq!(
        serde_json::from_str::<Value>(&v.body).expect("json"),
        json!({"validationCode": code})
    );
    let r = api.get(&list, &tok).await;
    assert_eq!(
        r.json()[0]["webhook"],
        json!({"authId": "o365activityapinotification", "address": rx.url, "expiration": "", "status": "enabled"})
    );
    // The same webhook again: no property change (and no second validation).
    let r = api.post_json(&start, &tok, &hook).await;
    af(&api, &r, 400, "AF20024");
    assert_eq!(rx.seen().len(), 1);

    // The receiver now answers 500: AF20021 and the subscription is unchanged.
    rx.set_status(500);
    let changed = json!({"address": rx.url, "authId": "another", "expiration": null});
    let before = api.get(&list, &tok).await.text;
    let r = api.post_json(&start, &tok, &changed).await;
    let body = af(&api, &r, 400, "AF20021");
    insta::assert_json_snapshot!(
        "af20021_endpoint_not_200",
        replace_in(&body, &rx.url, "https://receiver/o365/")
    );
    assert_eq!(rx.seen().len(), 2);
    assert_eq!(api.get(&list, &tok).await.text, before);
    // Unwrapped body (Microsoft's support script), receiver healthy again: updated.
    rx.set_status(200);
    let r = api.post_json(&start, &tok, &changed).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["webhook"]["authId"], "another");
    assert_eq!(rx.seen()[2].headers["webhook-authid"], "another");
    // A body without a webhook removes it.
    let r = api.post(&start, &tok).await;
    assert_eq!(r.status, 200);
    assert_eq!(api.get(&list, &tok).await.json()[0]["webhook"], Value::Null);

    // Not HTTPS: refused before any connection is made.
    let plain = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let plain_url = format!("http://{}/hook", plain.local_addr().expect("addr"));
    let r = api
        .post_json(&start, &tok, &json!({"webhook": {"address": plain_url}}))
        .await;
    let body = af(&api, &r, 400, "AF20021");
    insta::assert_json_snapshot!(
        "af20021_not_https",
        replace_in(&body, &plain_url, "http://receiver/hook")
    );
    let accepted = tokio::time::timeout(Duration::from_millis(200), plain.accept()).await;
    assert!(
        accepted.is_err(),
        "the emulator never connected to a non-HTTPS address"
    );

    // A past expiration: AF20003; an unparsable one: AF20002; nothing is called.
    let calls = rx.seen().len();
    let r = api
        .post_json(
            &start,
            &tok,
            &json!({"webhook": {"address": rx.url, "expiration": "2020-01-01T00:00:00"}}),
        )
        .await;
    insta::assert_json_snapshot!(
        "af20003_expiration_in_the_past",
        af(&api, &r, 400, "AF20003")
    );
    let r = api
        .post_json(
            &start,
            &tok,
            &json!({"webhook": {"address": rx.url, "expiration": "soon"}}),
        )
        .await;
    af(&api, &r, 400, "AF20002");
    assert_eq!(rx.seen().len(), calls);

    // A receiver whose CA the emulator does not trust: not validated.
    let (ca_pem, foreign) = foreign_ca();
    let rx2 = Receiver::start(foreign.clone()).await;
    let r = api
        .post_json(&start, &tok, &json!({"webhook": {"address": rx2.url}}))
        .await;
    af(&api, &r, 400, "AF20021");
    assert!(rx2.seen().is_empty());

    // … unless the world names that CA.
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = dir.path().join("receiver-ca.pem");
    std::fs::write(&ca_file, &ca_pem).expect("write CA");
    let mut world = World::default_world().expect("world");
    world.server.management.webhook_ca_file = Some(ca_file);
    let api2 = Api::with_world(world).await;
    let tok2 = api2.token(CONTOSO).await;
    let start2 = format!(
        "{}/subscriptions/start?contentType=Audit.General",
        api2.feed(CONTOSO)
    );
    let r = api2
        .post_json(
            &start2,
            &tok2,
            &json!({"webhook": {"address": rx2.url, "authId": "x"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(rx2.seen().len(), 1);
}

#[test]
fn world_knobs_are_validated_naming_the_key() {
    let toml = m365_emulator::world::DEFAULT_WORLD_TOML.replace(
        "token_lifetime_seconds = 3600",
        "token_lifetime_seconds = 3600\n\n[server.management]\npage_size = 0",
    );
    let err = World::from_toml_str(&toml, "t").unwrap_err().to_string();
    assert!(err.contains("server.management.page_size"), "{err}");
    let toml = m365_emulator::world::DEFAULT_WORLD_TOML.replace(
        "token_lifetime_seconds = 3600",
        "token_lifetime_seconds = 3600\n\n[server.management]\nwebhook_ca_file = \"/nonexistent/ca.pem\"",
    );
    let err = World::from_toml_str(&toml, "t").unwrap_err().to_string();
    assert!(err.contains("server.management.webhook_ca_file"), "{err}");
    // In a world file, the path is relative to the file.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ca.pem"), foreign_ca().0).expect("write CA");
    let toml = m365_emulator::world::DEFAULT_WORLD_TOML.replace(
        "token_lifetime_seconds = 3600",
        "token_lifetime_seconds = 3600\n\n[server.management]\nwebhook_ca_file = \"ca.pem\"",
    );
    std::fs::write(dir.path().join("world.toml"), toml).expect("write world");
    let world = World::from_file(&dir.path().join("world.toml")).expect("loads");
    assert_eq!(
        world.server.management.webhook_ca_file,
        Some(dir.path().join("ca.pem"))
    );
}

// ---------------------------------------------------------------------------------------------
// Faults, conventions.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn injected_af_errors_come_out_in_the_management_shape() {
    let api = Api::start().await;
    let tok = api.token(CONTOSO).await;
    let list = format!(
        "{}/subscriptions/list?PublisherIdentifier={CONTOSO}",
        api.feed(CONTOSO)
    );
    // Codes no handler produces on its own are reachable through faults.
    for (code, status) in [
        ("AF20011", 400),
        ("AF20012", 400),
        ("AF20030", 400),
        ("AF20053", 400),
        ("AF20054", 400),
        ("AF50000", 500),
        ("AF429", 403),
    ] {
        let r = api
            .send(
                api.c
                    .get(&list)
                    .bearer_auth(&tok)
                    .header("x-m365emu-fault", code),
            )
            .await;
        let body = af(&api, &r, status, code);
        insta::assert_json_snapshot!(format!("fault_{}", code.to_ascii_lowercase()), body);
    }
    // A rate limit on blob downloads: AF429 with Method=GetBlob and the publisher, 403,
    // Retry-After.
    assert_eq!(
        api.start_sub(CONTOSO, &tok, "Audit.General").await.status,
        200
    );
    api.e.clock().advance(time::Duration::minutes(30));
    let tok = api.token(CONTOSO).await;
    let r = api
        .get(
            &format!(
                "{}/subscriptions/content?contentType=Audit.General",
                api.feed(CONTOSO)
            ),
            &tok,
        )
        .await;
    let uri = r.json()[0]["contentUri"].as_str().expect("uri").to_string();
    let _guard = api
        .e
        .add_fault(json!({"match": {"operation": "management.content.get"}, "action": {"rate_limit": {"burst": 1, "per_second": 0.001}}}))
        .expect("fault");
    let url = format!("{uri}?PublisherIdentifier={CONTOSO}");
    assert_eq!(api.get(&url, &tok).await.status, 200);
    let r = api.get(&url, &tok).await;
    let body = af(&api, &r, 403, "AF429");
    assert_eq!(
        body["error"]["message"],
        format!("Too many requests. Method=GetBlob, PublisherId={CONTOSO}")
    );
    assert!(r.header("retry-after").is_some());
    let codes = journal_codes(&api, "management.content.get");
    assert_eq!(codes, vec![(200, None), (403, Some("AF429".into()))]);
}

#[tokio::test]
async fn date_header_follows_the_emulator_clock() {
    let api = Api::start().await;
    let tok = api.token(CONTOSO).await;
    let r = api
        .get(&format!("{}/subscriptions/list", api.feed(CONTOSO)), &tok)
        .await;
    assert_eq!(r.header("date"), Some("Fri, 01 Mar 2030 00:00:00 GMT"));
    let q = m365_emulator::journal::JournalQuery {
        service: Some("management".into()),
        ..Default::default()
    };
    let entries = api.e.journal().query(&q);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].operation, "management.subscriptions.list");
    assert_eq!(entries[0].tenant.as_deref(), Some(CONTOSO));
    assert_eq!(entries[0].client_id.as_deref(), Some(COLLECTOR));
}

/// Sends one HTTP/1.1 request over `stream` and returns (head, body) of the response.
async fn raw_exchange<S>(mut stream: S, request: String) -> (String, String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    // A TLS peer may end without close_notify: what was read until then is the response.
    let _ = tokio::time::timeout(HTTP_TIMEOUT, stream.read_to_end(&mut raw))
        .await
        .expect("in time");
    let text = String::from_utf8(raw).expect("UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
    (head.to_string(), body.to_string())
}

#[tokio::test]
async fn raw_http1_next_page_uri_has_its_exact_case_on_both_listeners() {
    let mut world = World::default_world().expect("world");
    world.server.management.page_size = Some(2);
    let api = Api::with_world(world).await;
    let tok = api.token(CONTOSO).await;
    assert_eq!(
        api.start_sub(CONTOSO, &tok, "Audit.General").await.status,
        200
    );
    api.e.clock().advance(time::Duration::minutes(30));
    let tok = api.token(CONTOSO).await;
    let path =
        format!("/api/v1/{CONTOSO}/activity/feed/subscriptions/content?contentType=audit.general");
    let request = |host: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {tok}\r\nConnection: close\r\n\r\n"
        )
    };

    // Plain HTTP.
    let addr = api.e.http_addr();
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (head, body) = raw_exchange(stream, request(&addr.to_string())).await;
    // HTTPS, HTTP/1.1 negotiated by ALPN.
    let tls_addr = api.e.https_addr();
    let mut roots = rustls::RootCertStore::empty();
    let ca = {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::CertificateDer::from_pem_slice(api.e.ca_pem().as_bytes()).expect("CA PEM")
    };
    roots.add(ca).expect("CA");
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(tls_addr)
        .await
        .expect("connect");
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    let tls = connector.connect(name, tcp).await.expect("TLS");
    let (tls_head, tls_body) =
        raw_exchange(tls, request(&format!("localhost:{}", tls_addr.port()))).await;

    for (origin, head, body) in [
        (format!("http://{addr}"), head, body),
        (
            format!("https://localhost:{}", tls_addr.port()),
            tls_head,
            tls_body,
        ),
    ] {
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        // The header name exactly as the real service spells it (Wazuh matches `NextPageUri:`).
        let line = head
            .lines()
            .find(|l| l.starts_with("NextPageUri: "))
            .unwrap_or_else(|| panic!("an exact `NextPageUri:` line in {head}"));
        let value = line.trim_start_matches("NextPageUri: ");
        assert!(
            value.starts_with(&format!("{origin}{path}&startTime=")),
            "same path and version, same origin: {value}"
        );
        assert!(
            head.contains("\r\ndate: Fri, 01 Mar 2030 00:30:00 GMT\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\ncontent-type: application/json; charset=utf-8\r\n"));
        let entries: Value = serde_json::from_str(&body).expect("JSON body");
        assert_eq!(entries.as_array().map(Vec::len), Some(2));
        assert!(entries[0]["contentUri"]
            .as_str()
            .expect("uri")
            .starts_with(&format!("{origin}/api/v1.0/{CONTOSO}/activity/feed/audit/")));
    }
}

// ---------------------------------------------------------------------------------------------
// Parsers never panic.
// ---------------------------------------------------------------------------------------------

mod properties {
    use m365_emulator::management::content::{decode_next_page, window};
    use m365_emulator::management::dates::parse_request_time;
    use m365_emulator::management::generator::{Feed, FeedConfig};
    use m365_emulator::management::percent_decode;
    use proptest::prelude::*;
    use time::macros::datetime;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn accept_language_and_receiver_checks_never_panic(s in "\\PC{0,60}", t in "[a-zA-Z*]{0,9}(-[a-zA-Z0-9]{0,9}){0,3}(;q=[0-9.]{0,5})?") {
            use m365_emulator::management::resources::check_accept_language;
            use m365_emulator::management::webhook::receiver_allowed;
            let _ = check_accept_language(&[&s]);
            // A lone well-formed tag never counts as two languages.
            if let Err(e) = check_accept_language(&[&t]) {
                prop_assert_eq!(e.code, "AF20054");
            }
            let _ = receiver_allowed(&s, &[]);
            let _ = receiver_allowed(&format!("https://{s}/x"), std::slice::from_ref(&s));
        }

        #[test]
        fn content_and_history_next_page_tokens_never_panic(s in "[0-9]{10}R[0-9]{0,25}") {
            if let Some((hour, index)) = decode_next_page(&s) {
                prop_assert_eq!(hour.len(), 10);
                prop_assert!(index >= 0);
            }
        }

        #[test]
        fn datetime_parser_never_panics(s in "\\PC{0,40}") {
            let _ = parse_request_time(&s);
        }

        #[test]
        fn datetime_parser_on_near_valid_input(s in "[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\\.[0-9]{0,12})?)?)?([Zz ]|[+-][0-9]{2}:?[0-9]{2})?") {
            if let Some(t) = parse_request_time(&s) {
                prop_assert_eq!(t.offset(), time::UtcOffset::UTC);
            }
            let now = datetime!(2030-03-01 00:00 UTC);
            let knobs = m365_emulator::management::knobs::Knobs::resolve(&Default::default(), 0);
            let _ = window(Some(&s), Some(&s), now, &knobs);
        }

        #[test]
        fn next_page_decoder_never_panics(s in "\\PC{0,40}", digits in "[0-9]{10}R[0-9]{0,30}") {
            let _ = decode_next_page(&s);
            let _ = decode_next_page(&digits);
        }

        #[test]
        fn content_id_and_percent_decoding_never_panic(s in "[0-9a-zA-Z$%_.]{0,80}") {
            let _ = percent_decode(&s);
            let _ = Feed::parse_content_id(FeedConfig::default(), &s);
        }

        #[test]
        fn next_page_round_trips(index in 0i64..10_000_000_000) {
            let feed = Feed::new(FeedConfig::default(), uuid::Uuid::nil(), m365_emulator::management::wire::ContentType::General);
            let token = m365_emulator::management::content::encode_next_page(&feed, index);
            prop_assert_eq!(decode_next_page(&token).map(|(_, i)| i), Some(index));
        }
    }
}
