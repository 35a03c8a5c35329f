//! Criterion benchmarks of the non-token service paths: ACS HMAC request verification and the
//! Management Activity API (a content page, a blob served through the router, and a plain
//! `serde_json` serialisation of the same records as the in-run reference).
//! See `benches/README.md` for the ids.

use std::hint::black_box;
use std::sync::Arc;

use axum::body::Body;
use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http::{header, Method, Request, StatusCode};
use http_body_util::BodyExt;
use m365_benches::acs_hmac::{self, AcsCredential};
use m365_emulator::{Core, Overrides, Settings, World};
use serde_json::Value;
use time::Duration;
use tokio::runtime::Runtime;
use tower::ServiceExt;

const TENANT: &str = "contoso.onmicrosoft.com";
const COLLECTOR: &str = "b78eacce-6d2d-401c-8e4f-c3fa7b1760ac";
const COLLECTOR_SECRET: &str = "collector-secret~0123456789abcdefghijkl";
const HOST: &str = "localhost";
/// 1M records a day: a blob every 300 s with 3,472 records (288 × 3,472 = 999,936).
const RECORDS_PER_BLOB: u32 = 3472;

async fn call(app: &Router, req: Request<Body>) -> (StatusCode, http::HeaderMap, bytes::Bytes) {
    let resp = app.clone().oneshot(req).await.expect("infallible router");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    (parts.status, parts.headers, body)
}

fn get(path: &str, bearer: &str) -> Request<Body> {
    Request::builder()
        .method(Method::GET)
        .uri(path)
        .header(header::HOST, HOST)
        .header(header::AUTHORIZATION, bearer)
        .body(Body::empty())
        .expect("request")
}

fn path_of(url: &str) -> String {
    url.split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_string()))
        .unwrap_or_else(|| url.to_string())
}

/// An emulator core with a 1M-records-a-day feed, a started Audit.General subscription one
/// day in the past (virtual clock), a valid token, one listing path and one blob path.
struct Feed {
    app: Router,
    bearer: String,
    listing: String,
    blob: String,
    records: usize,
    _state_dir: tempfile::TempDir,
}

fn token(rt: &Runtime, app: &Router) -> String {
    let form = format!(
        "grant_type=client_credentials&client_id={COLLECTOR}&client_secret={}&scope={}",
        m365_benches::scenarios::encode(COLLECTOR_SECRET),
        m365_benches::scenarios::encode("https://manage.office.com/.default")
    );
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("/{TENANT}/oauth2/v2.0/token"))
        .header(header::HOST, HOST)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form))
        .expect("request");
    let (status, _, body) = rt.block_on(call(app, req));
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).expect("json");
    format!(
        "Bearer {}",
        v["access_token"].as_str().expect("access_token")
    )
}

fn feed(rt: &Runtime) -> Feed {
    let state_dir = tempfile::Builder::new()
        .prefix("m365-benches-")
        .tempdir()
        .expect("temporary state directory");
    let mut world = World::default_world().expect("default world");
    world.server.management.records_per_blob = Some(RECORDS_PER_BLOB);
    world.server.management.blob_interval_seconds = Some(300);
    let overrides = Overrides {
        state_dir: Some(state_dir.path().to_path_buf()),
        key_seed: Some(1),
        ..Default::default()
    };
    let settings = Settings::resolve(overrides, &world.server, (0, 0)).expect("settings");
    let core = Arc::new(Core::new(settings, world).expect("core"));
    let tenant_id = core.directory().tenant(TENANT).expect("contoso").id;
    let app = m365_emulator::router(core.clone());
    let feed = format!("/api/v1.0/{tenant_id}/activity/feed");

    let bearer = token(rt, &app);
    let start = Request::builder()
        .method(Method::POST)
        .uri(format!(
            "{feed}/subscriptions/start?contentType=Audit.General"
        ))
        .header(header::HOST, HOST)
        .header(header::AUTHORIZATION, &bearer)
        .body(Body::empty())
        .expect("request");
    let (status, _, body) = rt.block_on(call(&app, start));
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    core.clock.advance(Duration::days(1) + Duration::minutes(1));
    let bearer = token(rt, &app);

    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let end = core.clock.now();
    let listing = format!(
        "{feed}/subscriptions/content?contentType=Audit.General&startTime={}&endTime={}",
        (end - Duration::days(1)).format(&fmt).expect("time"),
        end.format(&fmt).expect("time")
    );
    let (status, _, body) = rt.block_on(call(&app, get(&listing, &bearer)));
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let entries: Vec<Value> = serde_json::from_slice(&body).expect("listing json");
    let blob = path_of(entries[0]["contentUri"].as_str().expect("contentUri"));
    let (status, _, body) = rt.block_on(call(&app, get(&blob, &bearer)));
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let records = serde_json::from_slice::<Vec<Value>>(&body)
        .expect("blob")
        .len();
    assert_eq!(records, RECORDS_PER_BLOB as usize);
    Feed {
        app,
        bearer,
        listing,
        blob,
        records,
        _state_dir: state_dir,
    }
}

fn bench_management(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let fx = feed(&rt);
    let mut group = c.benchmark_group("management");
    group.sample_size(20);
    group.throughput(Throughput::Elements(1));
    group.bench_function("page/content-list-24h", |b| {
        b.iter(|| {
            rt.block_on(call(&fx.app, get(&fx.listing, &fx.bearer)))
                .2
                .len()
        })
    });
    group.throughput(Throughput::Elements(fx.records as u64));
    group.bench_function("blob/served-by-emulator", |b| {
        b.iter(|| {
            rt.block_on(call(&fx.app, get(&fx.blob, &fx.bearer)))
                .2
                .len()
        })
    });
    let (_, _, body) = rt.block_on(call(&fx.app, get(&fx.blob, &fx.bearer)));
    let records: Vec<Value> = serde_json::from_slice(&body).expect("blob json");
    group.bench_function("blob/plain-serde_json", |b| {
        b.iter(|| serde_json::to_vec(black_box(&records)).expect("json").len())
    });
    group.finish();
}

fn bench_hmac(c: &mut Criterion) {
    // The reference's test key; the server side recomputes the string to sign and compares.
    let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    let credential = AcsCredential::new("https://127.0.0.1:18089", key).expect("credential");
    let date = acs_hmac::rfc1123(time::OffsetDateTime::now_utc());
    let body = br#"{"createTokenWithScopes":["chat"]}"#;
    let path = "/identities?api-version=2023-10-01";
    let sent = credential.sign("POST", path, &date, body);
    let mut group = c.benchmark_group("hmac");
    group.throughput(Throughput::Elements(1));
    group.bench_function("verify/acs-create-identity", |b| {
        b.iter(|| {
            let expected = credential.sign("POST", black_box(path), &date, black_box(body));
            m365_emulator::jose::constant_time_eq(
                expected.authorization.as_bytes(),
                sent.authorization.as_bytes(),
            ) && expected.content_sha256 == sent.content_sha256
        })
    });
    group.finish();
}

criterion_group!(benches, bench_hmac, bench_management);
criterion_main!(benches);
