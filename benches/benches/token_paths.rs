//! Criterion benchmarks of the emulator's token paths. See `benches/README.md` for what each
//! benchmark id measures and how to compare the figures with `openssl speed`.
//!
//! Everything runs in-process: no sockets, no TLS. The HTTP benchmarks call the real router
//! with `tower::ServiceExt::oneshot`, so they measure routing, form parsing, client
//! authentication, minting and JSON rendering, but not hyper or rustls.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::Router;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use http::{header, Method, Request, StatusCode};
use http_body_util::BodyExt;
use m365_emulator::entra::assertion::{self, AssertionContext, JWT_BEARER};
use m365_emulator::entra::mint::{self, AppOnlyGrant, ClientAuth};
use m365_emulator::jose::{JwsAlg, RsaSigningKey};
use m365_emulator::pki::{self, CertInfo, KeySource};
use m365_emulator::state::RegisteredCertificate;
use m365_emulator::{Core, Overrides, Settings, World};
use serde_json::json;
use time::{Duration, OffsetDateTime};
use tokio::runtime::Runtime;
use tower::ServiceExt;
use uuid::Uuid;

/// The default world's multi-tenant "Contoso Audit Collector" (certificate and secret).
const COLLECTOR: &str = "b78eacce-6d2d-401c-8e4f-c3fa7b1760ac";
/// Its quick-start secret in the default world.
const COLLECTOR_SECRET: &str = "collector-secret~0123456789abcdefghijkl";
const TENANT: &str = "contoso.onmicrosoft.com";
const RESOURCE: &str = "https://manage.office.com";
/// Requests without connection facts or a URI authority get origin `https://{Host}`.
const HOST: &str = "localhost";

/// A seeded emulator core (no listeners) and what the benchmarks need from it.
struct Fixture {
    core: Arc<Core>,
    client_id: Uuid,
    /// The collector's generated certificate credential.
    certificate: RegisteredCertificate,
    /// The private key of that certificate, parsed once.
    client_key: RsaSigningKey,
    /// Keeps the state directory alive for the whole run.
    _state_dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let state_dir = tempfile::Builder::new()
            .prefix("m365-benches-")
            .tempdir()
            .expect("temporary state directory");
        let world = World::default_world().expect("default world");
        let overrides = Overrides {
            state_dir: Some(state_dir.path().to_path_buf()),
            key_seed: Some(1),
            ..Default::default()
        };
        let settings = Settings::resolve(overrides, &world.server, (0, 0)).expect("settings");
        let core = Core::new(settings, world).expect("emulator core");
        let client_id = Uuid::parse_str(COLLECTOR).expect("collector id");
        let certificate = core
            .directory()
            .certificates_of(&client_id)
            .first()
            .cloned()
            .expect("the collector has a certificate credential");
        let key_path = &certificate
            .files
            .as_ref()
            .expect("the collector's certificate is generated (has a key file)")
            .private_key_pem_path;
        let client_key = load_key_file(key_path);
        Fixture {
            core: Arc::new(core),
            client_id,
            certificate,
            client_key,
            _state_dir: state_dir,
        }
    }
}

fn load_key_file(path: &Path) -> RsaSigningKey {
    let pem = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    parse_key(&pem)
}

fn parse_key(pem: &str) -> RsaSigningKey {
    let der = pki::first_pem_block(pem, "PRIVATE KEY").expect("a PKCS#8 PRIVATE KEY block");
    RsaSigningKey::from_pkcs8_der(&der).expect("an RSA private key")
}

/// The v2 token endpoint as the router sees it for a request with `Host: localhost`.
fn token_audience() -> String {
    format!("https://{HOST}/{TENANT}/oauth2/v2.0/token")
}

/// Builds and signs a client assertion as MSAL does: a fresh `jti`, `iat` now, `exp` later.
/// RS256 names the certificate by `x5t` (SHA-1), PS256 by `x5t#S256`, as MSAL does.
fn client_assertion(
    key: &RsaSigningKey,
    alg: JwsAlg,
    cert: &CertInfo,
    client_id: &str,
    aud: &str,
    lifetime: Duration,
) -> String {
    let header = match alg {
        JwsAlg::RS256 => json!({"alg": "RS256", "typ": "JWT", "x5t": cert.x5t()}),
        JwsAlg::PS256 => json!({"alg": "PS256", "typ": "JWT", "x5t#S256": cert.x5t_s256()}),
    };
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let claims = json!({
        "aud": aud,
        "iss": client_id,
        "sub": client_id,
        "jti": Uuid::new_v4().to_string(),
        "exp": now + lifetime.whole_seconds(),
        "iat": now,
    });
    key.sign_jwt(alg, &header, &claims).expect("signing")
}

fn token_request(form: &str) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri(format!("/{TENANT}/oauth2/v2.0/token"))
        .header(header::HOST, HOST)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form.to_string()))
        .expect("request")
}

fn get_request(path: &str) -> Request<Body> {
    Request::builder()
        .method(Method::GET)
        .uri(path)
        .header(header::HOST, HOST)
        .body(Body::empty())
        .expect("request")
}

/// One request through the router, body read to the end, as a server would write it.
async fn call(app: &Router, req: Request<Body>) -> (StatusCode, usize) {
    let resp = app.clone().oneshot(req).await.expect("infallible router");
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("response body")
        .to_bytes();
    (status, body.len())
}

/// Runs one request outside the measurement and insists on a 200, so a benchmark never
/// measures an error path by accident.
fn expect_ok(rt: &Runtime, app: &Router, what: &str, req: Request<Body>) {
    let resp = rt.block_on(async {
        let resp = app.clone().oneshot(req).await.expect("infallible router");
        let status = resp.status();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    });
    assert_eq!(resp.0, StatusCode::OK, "{what} failed: {}", resp.1);
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

fn per_call<M: criterion::measurement::Measurement>(group: &mut BenchmarkGroup<'_, M>) {
    group.throughput(Throughput::Elements(1));
}

fn bench_reference(c: &mut Criterion) {
    let key = parse_key(
        &KeySource { seed: Some(1) }
            .rsa_2048_pem("bench")
            .expect("key"),
    );
    let message = [0x5au8; 32];
    let mut group = c.benchmark_group("reference");
    per_call(&mut group);
    group.bench_function("openssl-like/rsa2048-sign-raw", |b| {
        b.iter(|| key.sign(JwsAlg::RS256, black_box(&message)).expect("sign"))
    });
    group.finish();
}

fn bench_assertions(c: &mut Criterion, fx: &Fixture) {
    // Signing: a key of its own, as a client would have; the certificate only names it.
    let bench_key = parse_key(
        &KeySource { seed: Some(1) }
            .rsa_2048_pem("bench")
            .expect("key"),
    );
    let client = fx.client_id.to_string();
    let aud = token_audience();
    let cert = &fx.certificate.info;
    let lifetime = Duration::minutes(10);

    // Verification: assertions signed with the collector's real key, validated as the token
    // endpoint does (against the app's registered certificates).
    let dir = fx.core.directory();
    let certificates = dir.certificates_of(&fx.client_id).to_vec();
    drop(dir);
    let audiences = vec![aud.clone()];
    let skew = fx.core.settings.clock_skew;

    let mut group = c.benchmark_group("assertion");
    per_call(&mut group);
    for alg in [JwsAlg::RS256, JwsAlg::PS256] {
        group.bench_function(format!("sign/{}", alg.name()), |b| {
            b.iter(|| client_assertion(&bench_key, alg, cert, &client, &aud, lifetime))
        });
    }
    for alg in [JwsAlg::RS256, JwsAlg::PS256] {
        let signed = client_assertion(&fx.client_key, alg, cert, &client, &aud, lifetime);
        let ctx = AssertionContext {
            client_id: &fx.client_id,
            certificates: &certificates,
            audiences: &audiences,
            now: fx.core.clock.now(),
            skew,
            // Every iteration checks the signature (the server remembers verified ones).
            verified: None,
        };
        let valid = assertion::validate(&signed, &ctx).expect("the assertion validates");
        assert_eq!(valid.alg, alg);
        group.bench_function(format!("verify/{}", alg.name()), |b| {
            b.iter(|| assertion::validate(black_box(&signed), &ctx).expect("valid"))
        });
    }
    group.finish();
}

fn bench_tokens(c: &mut Criterion, fx: &Fixture, rt: &Runtime) {
    let app = m365_emulator::router(fx.core.clone());
    let client = fx.client_id.to_string();

    let mut group = c.benchmark_group("token");
    per_call(&mut group);

    // Minting alone: claims, JSON, one RS256 signature with the active signing key.
    {
        let dir = fx.core.directory();
        let tenant = dir.tenant(TENANT).expect("tenant");
        let app_reg = dir.application(&fx.client_id).expect("collector");
        let sp = dir
            .service_principal(tenant, app_reg)
            .expect("service principal");
        let resource = dir.world.resource(RESOURCE).expect("resource");
        assert_eq!(
            resource.access_token_version, 1,
            "{RESOURCE} issues v1 tokens"
        );
        let roles = sp
            .app_role_grants
            .get(RESOURCE)
            .cloned()
            .unwrap_or_default();
        let key = fx.core.signing.active();
        let settings = &fx.core.settings;
        let grant = AppOnlyGrant {
            tenant,
            app: app_reg,
            service_principal: sp.object_id_in(&tenant.id),
            resource,
            requested_resource: RESOURCE,
            roles,
            auth: ClientAuth::Certificate,
        };
        group.bench_function("mint/v1", |b| {
            b.iter(|| {
                mint::mint_app_only(
                    &key,
                    black_box(&grant),
                    fx.core.clock.now(),
                    settings.token_lifetime,
                    &settings.issuer_host,
                )
                .expect("mint")
            })
        });
    }

    let scope = format!("{RESOURCE}/.default");
    let secret_form = form(&[
        ("grant_type", "client_credentials"),
        ("client_id", &client),
        ("client_secret", COLLECTOR_SECRET),
        ("scope", &scope),
    ]);
    // One assertion, valid for ten minutes and reused for every request, as MSAL and
    // azure-identity cache theirs.
    let assertion = client_assertion(
        &fx.client_key,
        JwsAlg::RS256,
        &fx.certificate.info,
        &client,
        &token_audience(),
        Duration::minutes(10),
    );
    let certificate_form = form(&[
        ("grant_type", "client_credentials"),
        ("client_id", &client),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", &assertion),
        ("scope", &scope),
    ]);
    for (name, body) in [
        ("request/secret", &secret_form),
        ("request/certificate", &certificate_form),
    ] {
        expect_ok(rt, &app, name, token_request(body));
        group.bench_function(name, |b| {
            b.to_async(rt).iter(|| call(&app, token_request(body)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("discovery");
    per_call(&mut group);
    for (name, path) in [
        (
            "openid-configuration/v2",
            format!("/{TENANT}/v2.0/.well-known/openid-configuration"),
        ),
        ("jwks/v2", format!("/{TENANT}/discovery/v2.0/keys")),
    ] {
        expect_ok(rt, &app, name, get_request(&path));
        group.bench_function(name, |b| {
            b.to_async(rt).iter(|| call(&app, get_request(&path)))
        });
    }
    group.finish();
}

fn token_paths(c: &mut Criterion) {
    bench_reference(c);
    let fx = Fixture::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    bench_assertions(c, &fx);
    bench_tokens(c, &fx, &rt);
}

criterion_group!(benches, token_paths);
criterion_main!(benches);
