//! The token path's shortcuts change nothing a client can see.
//!
//! Tokens signed ahead (`entra::presign`): what a client receives from the pool is
//! indistinguishable from a token minted for its request. Each is handed out once (own
//! `uti`), verifies against the JWKS (jsonwebtoken and the shared validator), carries the
//! request's `iat`/`nbf`/`exp` and `expires_in` 3599, and the pool is bypassed as soon as the
//! clock's second or the active key changes.
//!
//! Remembered assertion signatures (`entra::assertion::VerifiedSignatures`): a reused
//! assertion still gets every other check, and a changed signature is verified anew.

mod support;

use std::collections::HashSet;

use base64::Engine;
use m365_emulator::entra::presign::{self, Work, TARGET};
use m365_emulator::Emulator;
use serde_json::{json, Value};
use support::*;

/// Fills the pool for every hot recipe at the clock's current second.
fn fill(em: &Emulator) {
    for _ in 0..(4 * TARGET) {
        if presign::sign_ahead(em.core()) != Work::Signed {
            return;
        }
    }
    panic!("the pool never filled");
}

fn ready(em: &Emulator) -> Vec<String> {
    let all = em.core().presign.ready_tokens();
    assert_eq!(all.len(), 1, "one hot recipe");
    all.into_iter().next().map(|(_, t)| t).unwrap_or_default()
}

/// A token request as the collector; returns the token and the response body.
async fn token(http: &reqwest::Client, em: &Emulator) -> (String, Value) {
    secret_token_reply(http, em, CONTOSO).await
}

/// Checks a token as a client would: signature against the JWKS, claims, times.
fn check(em: &Emulator, jwks: &Value, token: &str, body: &Value, now_unix: i64) -> Value {
    let iss = format!("https://sts.windows.net/{CONTOSO}/");
    let (_, claims) = verify_token(token, jwks, MANAGE, &iss)
        .unwrap_or_else(|e| panic!("jsonwebtoken refuses the token: {e}"));
    m365_emulator::tokens::validate(em.core(), token, &[MANAGE])
        .unwrap_or_else(|e| panic!("the shared validator refuses the token: {e}"));
    assert_eq!(claims["iat"], json!(now_unix - 300), "{claims}");
    assert_eq!(claims["nbf"], claims["iat"]);
    assert_eq!(claims["exp"], json!(now_unix + 3600), "{claims}");
    assert_eq!(body["expires_in"], 3599, "{body}");
    assert_eq!(claims["appid"], COLLECTOR);
    assert_eq!(claims["tid"], CONTOSO);
    claims
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_signed_tokens_are_unique_verifiable_and_carry_the_request_time() {
    let em = start().await;
    let http = client(&em);
    if cfg!(target_os = "linux") {
        for _ in 0..200 {
            if em.core().presign.is_running() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(em.core().presign.is_running(), "the signing thread runs");
    } else if !em.core().presign.is_running() {
        return;
    }
    let jwks = jwks(&http, &em).await;
    // A frozen clock keeps every request in the second the pool was signed in.
    em.clock().freeze();
    let now = em.clock().now().unix_timestamp();
    let (first, body) = token(&http, &em).await;
    let first_claims = check(&em, &jwks, &first, &body, now);

    fill(&em);
    let pool: Vec<String> = ready(&em);
    assert!(pool.len() >= TARGET, "{} ready", pool.len());
    let mut utis = HashSet::new();
    let mut served = HashSet::new();
    utis.insert(first_claims["uti"].to_string());
    for _ in 0..TARGET {
        let (t, body) = token(&http, &em).await;
        let claims = check(&em, &jwks, &t, &body, now);
        assert!(
            utis.insert(claims["uti"].to_string()),
            "uti reused: {claims}"
        );
        assert!(served.insert(t), "a token was handed out twice");
    }
    let from_pool = pool.iter().filter(|t| served.contains(*t)).count();
    // The request path never waits for the pool's lock, so a rare request signs its own.
    assert!(
        from_pool >= TARGET / 2,
        "{from_pool} of {TARGET} answers came from the pool"
    );

    // One second later the ready tokens carry the wrong times: never handed out.
    fill(&em);
    let stale: HashSet<String> = ready(&em).into_iter().collect();
    em.clock().advance(time::Duration::seconds(1));
    let (t, body) = token(&http, &em).await;
    assert!(
        !stale.contains(&t),
        "a token of the previous second was served"
    );
    check(&em, &jwks, &t, &body, now + 1);

    // After a rotation, tokens of the old key are never handed out.
    fill(&em);
    let old: HashSet<String> = em
        .core()
        .presign
        .ready_tokens()
        .into_iter()
        .flat_map(|(_, t)| t)
        .collect();
    let (status, _, rotated) = read_json(
        http.post(format!("{}/_emulator/keys/rotate", em.https_uri()))
            .json(&json!({"overlap_seconds": 600}))
            .send()
            .await
            .expect("rotate"),
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let jwks = support::jwks(&http, &em).await;
    let (t, body) = token(&http, &em).await;
    assert!(!old.contains(&t), "a token of the old key was served");
    assert_eq!(raw_header(&t)["kid"], rotated["active_kid"]);
    check(&em, &jwks, &t, &body, now + 1);
}

/// The server remembers assertion signatures that verified (clients reuse an assertion for
/// minutes); a repeat still gets every other check, and a changed signature is checked anew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_assertion_is_checked_like_a_new_one() {
    let em = start().await;
    let http = client(&em);
    let collector = AppCredential::load(&em, COLLECTOR);
    let url = token_url_v2(&em, CONTOSO);
    let now = em.clock().now().unix_timestamp();
    let assertion = collector.msal_python_assertion(COLLECTOR, &url, now);
    let codes = |body: &Value| body["error_codes"].clone();
    for _ in 0..2 {
        let (status, _, body) =
            post_form(&http, &url, &assertion_form_v2(COLLECTOR, &assertion)).await;
        assert_eq!(status, 200, "{body}");
    }
    // The same signed bytes with one bit of the signature flipped.
    let (head, sig) = assertion.rsplit_once('.').expect("three segments");
    let mut raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sig)
        .expect("base64url");
    raw[10] ^= 1;
    let tampered = format!(
        "{head}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    );
    let (status, _, body) = post_form(&http, &url, &assertion_form_v2(COLLECTOR, &tampered)).await;
    assert_eq!((status, codes(&body)), (401, json!([700027])), "{body}");
    // The verified assertion posted to another tenant's endpoint: wrong audience.
    let other = token_url_v2(&em, CONTOSO_DOMAIN);
    let (status, _, body) =
        post_form(&http, &other, &assertion_form_v2(COLLECTOR, &assertion)).await;
    assert_eq!(
        status, 200,
        "the domain form of the same tenant is accepted: {body}"
    );
    let fabrikam = token_url_v2(&em, FABRIKAM);
    let (status, _, body) =
        post_form(&http, &fabrikam, &assertion_form_v2(COLLECTOR, &assertion)).await;
    assert_eq!((status, codes(&body)), (401, json!([700023])), "{body}");
    // Past its validity (plus skew), the remembered signature does not help.
    em.clock().advance(time::Duration::minutes(20));
    let (status, _, body) = post_form(&http, &url, &assertion_form_v2(COLLECTOR, &assertion)).await;
    assert_eq!((status, codes(&body)), (401, json!([700024])), "{body}");
}
