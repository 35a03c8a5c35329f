//! Property tests: the client-assertion validator and the world-file parser never panic on
//! arbitrary input, and a valid assertion with any single byte changed is always rejected.

mod support;

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use m365_emulator::entra::assertion::{validate, AssertionContext};
use m365_emulator::jose::{JwsAlg, RsaSigningKey};
use m365_emulator::pki::CertInfo;
use m365_emulator::state::RegisteredCertificate;
use m365_emulator::world::{World, DEFAULT_WORLD_TOML};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::{json, Map, Value};
use support::{AppCredential, COLLECTOR, CONTOSO, TEAMS_PHONE};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// Every code the validator may answer with.
const ASSERTION_CODES: [u32; 6] = [50027, 700021, 50048, 700027, 700023, 700024];

fn config() -> ProptestConfig {
    ProptestConfig {
        // Failures are reported by the test output; no regression files in the source tree.
        failure_persistence: None,
        ..ProptestConfig::with_cases(64)
    }
}

/// The collector's registered certificates and both apps' private keys, taken from a
/// seeded emulator (then shut down: the validator is exercised directly).
struct Fixture {
    client_id: Uuid,
    certificates: Vec<RegisteredCertificate>,
    collector_key: RsaSigningKey,
    collector_cert: CertInfo,
    teams_key: RsaSigningKey,
    teams_cert: CertInfo,
    audiences: Vec<String>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let em = support::start().await;
            let client_id = Uuid::parse_str(COLLECTOR).unwrap();
            let certificates = em.core().directory().certificates_of(&client_id).to_vec();
            assert_eq!(certificates.len(), 1);
            let collector = AppCredential::load(&em, COLLECTOR);
            let teams = AppCredential::load(&em, TEAMS_PHONE);
            assert_eq!(certificates[0].info, collector.cert);
            em.shutdown().await;
            Fixture {
                client_id,
                certificates,
                collector_key: collector.key,
                collector_cert: collector.cert,
                teams_key: teams.key,
                teams_cert: teams.cert,
                audiences: vec![format!(
                    "https://127.0.0.1:8443/{CONTOSO}/oauth2/v2.0/token"
                )],
            }
        })
    })
}

fn context(f: &Fixture, now: OffsetDateTime) -> AssertionContext<'_> {
    AssertionContext {
        client_id: &f.client_id,
        certificates: &f.certificates,
        audiences: &f.audiences,
        now,
        skew: Duration::seconds(300),
        // Every case checks its signature (the server's cache is tested in token_fast_paths).
        verified: None,
    }
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("JSON"))
}

/// Arbitrary JSON: scalars (including extreme numbers) nested in arrays and objects.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        prop_oneof![
            Just(1e308),
            Just(-1e308),
            Just(f64::MIN_POSITIVE),
            Just(-0.0)
        ]
        .prop_map(|f| json!(f)),
        "\\PC{0,24}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key_name(), inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Object keys: the JOSE/JWT names the validator reads, and anything else.
fn key_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "alg", "typ", "x5t", "x5t#S256", "x5c", "kid", "iss", "sub", "aud", "exp", "nbf",
            "iat", "jti",
        ])
        .prop_map(str::to_string),
        "\\PC{0,8}",
    ]
}

fn arb_object() -> impl Strategy<Value = Value> {
    prop::collection::vec((key_name(), arb_json()), 0..8)
        .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>()))
}

/// A JSON field: mostly the `good` value (absent when `None`), sometimes one of `others`,
/// absent, or arbitrary JSON, so that most cases get past the early checks.
fn field(good: Option<Value>, others: Vec<Value>) -> BoxedStrategy<Option<Value>> {
    let mut s = prop_oneof![
        16 => Just(good),
        1 => Just(None),
        1 => arb_json().prop_map(Some),
    ]
    .boxed();
    if !others.is_empty() {
        s = prop_oneof![6 => s, 1 => prop::sample::select(others).prop_map(Some)].boxed();
    }
    s
}

/// Header and claims near the valid shape, signed for real (mostly with the collector's key,
/// under the algorithm the header names), so validation reaches every check.
#[derive(Debug, Clone)]
struct NearValid {
    sign_ps256: bool,
    sign_with_teams: bool,
    header: Map<String, Value>,
    claims: Map<String, Value>,
}

fn near_valid(now: i64) -> impl Strategy<Value = NearValid> {
    let f = fixture();
    let collector_x5t = URL_SAFE_NO_PAD.encode(f.collector_cert.sha1);
    let collector_s256 = URL_SAFE_NO_PAD.encode(f.collector_cert.sha256);
    let teams_x5t = URL_SAFE_NO_PAD.encode(f.teams_cert.sha1);
    let std_b64 = |der: &[u8]| base64::engine::general_purpose::STANDARD.encode(der);
    let header = (
        prop::sample::select(vec![json!("RS256"), json!("PS256")]).prop_flat_map(|alg| {
            field(
                Some(alg),
                vec![json!("none"), json!("HS256"), json!("rs256")],
            )
        }),
        field(
            Some(json!(collector_x5t.clone())),
            vec![
                json!(format!("{collector_x5t}=")),
                json!(teams_x5t),
                json!(""),
            ],
        ),
        field(None, vec![json!(collector_s256), json!(collector_x5t)]),
        field(
            None,
            vec![
                json!([std_b64(&f.collector_cert.der)]),
                json!([std_b64(&f.teams_cert.der)]),
                json!([]),
                json!(["not base64"]),
            ],
        ),
    );
    let other = "12345678-1234-1234-1234-123456789abc";
    let aud = f.audiences[0].clone();
    let ids = || {
        field(
            Some(json!(COLLECTOR)),
            vec![json!(COLLECTOR.to_uppercase()), json!(other)],
        )
    };
    let times = |good: i64, others: Vec<i64>| {
        prop_oneof![
            8 => field(Some(json!(good)), others.into_iter().map(|t| json!(t)).collect()),
            1 => any::<f64>().prop_map(|t| Some(json!(t))),
            1 => Just(Some(json!(now as f64 + 0.5))),
        ]
    };
    let claims = (
        ids(),
        ids(),
        field(
            Some(json!(aud)),
            vec![
                json!([aud.clone(), "https://example.com"]),
                json!(aud.to_uppercase()),
                json!("https://example.com"),
            ],
        ),
        times(now + 600, vec![now - 299, now - 301, now - 100_000]),
        times(now, vec![now + 299, now + 301, 0]),
    );
    (
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.1),
        header,
        claims,
    )
        .prop_map(
            |(flip_alg, sign_with_teams, (alg, x5t, s256, x5c), (iss, sub, aud, exp, nbf))| {
                // Sign under the algorithm the header names, except when told to flip it.
                let named_ps256 = alg.as_ref().and_then(Value::as_str) == Some("PS256");
                let mut header = Map::new();
                let mut claims = Map::new();
                let put = |map: &mut Map<String, Value>, name: &str, value: Option<Value>| {
                    if let Some(v) = value {
                        map.insert(name.to_string(), v);
                    }
                };
                put(&mut header, "alg", alg);
                put(&mut header, "x5t", x5t);
                put(&mut header, "x5t#S256", s256);
                put(&mut header, "x5c", x5c);
                put(&mut claims, "iss", iss);
                put(&mut claims, "sub", sub);
                put(&mut claims, "aud", aud);
                put(&mut claims, "exp", exp);
                put(&mut claims, "nbf", nbf);
                NearValid {
                    sign_ps256: named_ps256 != flip_alg,
                    sign_with_teams,
                    header,
                    claims,
                }
            },
        )
}

fn code_of(
    r: &Result<
        m365_emulator::entra::assertion::ValidAssertion,
        m365_emulator::entra::errors::AadError,
    >,
) -> Option<u32> {
    r.as_ref().err().map(|e| e.code)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn validate_never_panics_on_arbitrary_strings(s in prop_oneof![
        any::<String>(),
        "[A-Za-z0-9_=.-]{0,300}",
        (prop::collection::vec(any::<u8>(), 0..64), prop::collection::vec(any::<u8>(), 0..64), prop::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(a, b, c)| format!("{}.{}.{}", URL_SAFE_NO_PAD.encode(a), URL_SAFE_NO_PAD.encode(b), URL_SAFE_NO_PAD.encode(c))),
    ]) {
        let f = fixture();
        let r = validate(&s, &context(f, OffsetDateTime::now_utc()));
        let code = code_of(&r);
        prop_assert!(code.is_some_and(|c| ASSERTION_CODES.contains(&c)), "{:?}", code);
    }

    #[test]
    fn validate_never_panics_on_arbitrary_json(
        header in arb_object(),
        claims in arb_object(),
        signature in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let f = fixture();
        let token = format!("{}.{}.{}", b64(&header), b64(&claims), URL_SAFE_NO_PAD.encode(&signature));
        let r = validate(&token, &context(f, OffsetDateTime::now_utc()));
        let code = code_of(&r);
        prop_assert!(code.is_some_and(|c| ASSERTION_CODES.contains(&c)), "{:?}", code);
    }

    #[test]
    fn properly_signed_near_valid_assertions_pass_only_when_they_should(
        case in near_valid(1_900_000_000),
    ) {
        let f = fixture();
        let now = OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap();
        let alg = if case.sign_ps256 { JwsAlg::PS256 } else { JwsAlg::RS256 };
        let key = if case.sign_with_teams { &f.teams_key } else { &f.collector_key };
        let token = key.sign_jwt(alg, &case.header, &case.claims).expect("sign");
        let r = validate(&token, &context(f, now));
        match &r {
            Err(e) => prop_assert!(ASSERTION_CODES.contains(&e.code), "{:?}", e),
            Ok(valid) => {
                // Whatever passes was signed by the collector's key, under the algorithm the
                // header names, by and for the collector, for our audience, inside the window.
                prop_assert!(!case.sign_with_teams, "accepted a foreign signature: {:?}", case);
                prop_assert_eq!(valid.alg, alg);
                prop_assert_eq!(case.header.get("alg").and_then(Value::as_str), Some(alg.name()));
                prop_assert_eq!(valid.key_id, f.certificates[0].key_id);
                let iss = case.claims.get("iss").and_then(Value::as_str).unwrap_or_default();
                prop_assert!(iss.eq_ignore_ascii_case(COLLECTOR));
                prop_assert_eq!(case.claims.get("sub"), case.claims.get("iss"));
                let aud_ok = |a: &Value| a.as_str().is_some_and(|a| a.eq_ignore_ascii_case(&f.audiences[0]));
                let aud = case.claims.get("aud").expect("aud");
                prop_assert!(aud_ok(aud) || aud.as_array().is_some_and(|l| l.iter().any(aud_ok)));
                let t = 1_900_000_000f64;
                let exp = case.claims.get("exp").and_then(Value::as_f64).expect("numeric exp");
                prop_assert!(t <= exp + 300.0);
                if let Some(nbf) = case.claims.get("nbf") {
                    prop_assert!(t + 300.0 >= nbf.as_f64().expect("numeric nbf"));
                }
            }
        }
    }

    #[test]
    fn any_single_byte_change_is_rejected(
        ps256 in any::<bool>(),
        position in any::<Index>(),
        replacement in any::<u8>(),
    ) {
        let f = fixture();
        let now = OffsetDateTime::now_utc();
        let t = now.unix_timestamp();
        let (alg, header) = if ps256 {
            (JwsAlg::PS256, json!({"alg": "PS256", "typ": "JWT",
                "x5t#S256": URL_SAFE_NO_PAD.encode(f.collector_cert.sha256),
                "x5c": [base64::engine::general_purpose::STANDARD.encode(&f.collector_cert.der)]}))
        } else {
            (JwsAlg::RS256, json!({"alg": "RS256", "typ": "JWT",
                "x5t": base64::engine::general_purpose::URL_SAFE.encode(f.collector_cert.sha1)}))
        };
        let claims = json!({"aud": f.audiences[0], "iss": COLLECTOR, "sub": COLLECTOR,
            "exp": t + 600, "nbf": t, "iat": t, "jti": Uuid::new_v4()});
        let token = f.collector_key.sign_jwt(alg, &header, &claims).expect("sign");
        let ctx = context(f, now);
        prop_assert!(validate(&token, &ctx).is_ok(), "the unmodified assertion is valid");

        let mut bytes = token.clone().into_bytes();
        let i = position.index(bytes.len());
        let original = bytes[i];
        bytes[i] = if replacement == original { replacement.wrapping_add(1) } else { replacement };
        // A change that makes the text invalid UTF-8 cannot even reach the validator (the form
        // parser refuses such bodies with AADSTS9002313); every other change must be refused.
        if let Ok(mutated) = String::from_utf8(bytes) {
            let r = validate(&mutated, &ctx);
            prop_assert!(r.is_err(), "accepted with byte {} changed from {:?}: {}", i, original as char, mutated);
        }
    }

    #[test]
    fn world_parser_never_panics_on_arbitrary_text(text in prop_oneof![
        any::<String>(),
        "(\\[\\[?[a-z_.]{0,12}\\]\\]?\n|[a-z_]{1,12} = (\"\\PC{0,12}\"|[0-9-]{1,6}|true|\\[\\]|\\{\\})\n){0,12}",
    ]) {
        if let Ok(world) = World::from_toml_str(&text, "<proptest>") {
            prop_assert!(world.validate("<again>").is_ok());
            prop_assert!(!world.tenants.is_empty());
        }
    }

    #[test]
    fn world_parser_never_panics_on_mutated_default_world(edits in prop::collection::vec(edit(), 1..5)) {
        let text = apply(DEFAULT_WORLD_TOML, &edits);
        if let Ok(world) = World::from_toml_str(&text, "<mutated default world>") {
            prop_assert!(world.validate("<again>").is_ok());
            prop_assert!(!world.tenants.is_empty());
        }
    }
}

#[test]
fn the_unmutated_default_world_parses() {
    let w = World::from_toml_str(DEFAULT_WORLD_TOML, "<default>").expect("valid");
    assert_eq!(w.tenants.len(), 3, "Contoso, Fabrikam, Northwind");
    assert_eq!(apply(DEFAULT_WORLD_TOML, &[]), DEFAULT_WORLD_TOML);
}

/// One edit of the default world's text.
#[derive(Debug, Clone)]
enum Edit {
    DeleteLine(Index),
    DuplicateLine(Index),
    SwapLines(Index, Index),
    /// Replaces the n-th quoted string's contents.
    ReplaceQuoted(Index, String),
    InsertAt(Index, String),
    DeleteChars(Index, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let values = prop_oneof![
        prop::sample::select(vec![
            "",
            "contoso.onmicrosoft.com",
            "CONTOSO.ONMICROSOFT.COM",
            "ca62b0eb-5136-43d1-8c4a-815e98e86782",
            "b78eacce-6d2d-401c-8e4f-c3fa7b1760ac",
            "00000000-0000-0000-0000-000000000000",
            "not-a-guid",
            "https://manage.office.com",
            "https://manage.office.com/",
            "ActivityFeed.Read",
            "Nope.Read",
            "2024-12-31T00:00:00Z",
            "not a date",
            "resource_account",
            "user_assigned",
            "bad host!",
        ])
        .prop_map(str::to_string),
        "\\PC{0,40}",
    ];
    let snippets = prop_oneof![
        prop::sample::select(vec![
            "=",
            "[[",
            "]]",
            "\"",
            "'",
            "\n",
            "#",
            "{",
            "}",
            ",",
            "\\",
            "1e400",
            "-1",
            "true",
            "\n[server]\n",
            "\n[[tenants]]\nid = \"ca62b0eb-5136-43d1-8c4a-815e98e86782\"\ndomain = \"x.com\"\ndisplay_name = \"X\"\n",
            "\n[[applications]]\nclient_id = \"b78eacce-6d2d-401c-8e4f-c3fa7b1760ac\"\n",
            "token_lifetime_seconds = 0\n",
            "clock_skew_seconds = -5\n",
        ])
        .prop_map(str::to_string),
        "\\PC{0,12}",
    ];
    prop_oneof![
        any::<Index>().prop_map(Edit::DeleteLine),
        any::<Index>().prop_map(Edit::DuplicateLine),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        (any::<Index>(), values).prop_map(|(i, v)| Edit::ReplaceQuoted(i, v)),
        (any::<Index>(), snippets).prop_map(|(i, s)| Edit::InsertAt(i, s)),
        (any::<Index>(), 1usize..40).prop_map(|(i, n)| Edit::DeleteChars(i, n)),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut text = text.to_string();
    for e in edits {
        text = match e {
            Edit::DeleteLine(i) | Edit::DuplicateLine(i) | Edit::SwapLines(i, _) => {
                let mut lines: Vec<&str> = text.split('\n').collect();
                let a = i.index(lines.len());
                match e {
                    Edit::DeleteLine(_) => {
                        lines.remove(a);
                    }
                    Edit::DuplicateLine(_) => lines.insert(a, lines[a]),
                    Edit::SwapLines(_, j) => {
                        let b = j.index(lines.len());
                        lines.swap(a, b);
                    }
                    _ => unreachable!(),
                }
                lines.join("\n")
            }
            Edit::ReplaceQuoted(i, value) => {
                let mut pieces: Vec<String> = text.split('"').map(str::to_string).collect();
                let quoted = pieces.len() / 2;
                if quoted > 0 {
                    let k = 2 * i.index(quoted) + 1;
                    pieces[k] = value.clone();
                }
                pieces.join("\"")
            }
            Edit::InsertAt(i, s) => {
                let chars: Vec<char> = text.chars().collect();
                let at = i.index(chars.len() + 1);
                let mut out: String = chars[..at].iter().collect();
                out.push_str(s);
                out.extend(&chars[at..]);
                out
            }
            Edit::DeleteChars(i, n) => {
                let chars: Vec<char> = text.chars().collect();
                if chars.is_empty() {
                    continue;
                }
                let at = i.index(chars.len());
                let end = (at + n).min(chars.len());
                chars[..at].iter().chain(&chars[end..]).collect()
            }
        };
    }
    text
}
