//! Entra ID: how the client gets app-only tokens.

use anyhow::Result;
use serde_json::{json, Value};

use super::{bounded_attempts, gaps, of_operation, time_of, waits_before_each_retry};
use crate::runner::{ClientRun, Cred, Ctx};
use crate::scenario;
use crate::scenario::{summarize, Check, Scenario};

pub fn scenarios() -> Vec<Scenario> {
    vec![
        scenario!("ENTRA-SECRET-001", "entra", "token", "Gets an app-only token with a client secret", "https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow#first-case-access-token-request-with-a-shared-secret", secret_token, mutants: [("--bad-scope", "succeeded")]),
        scenario!("ENTRA-CERT-001", "entra", "token", "Signs a correct certificate client assertion", "https://learn.microsoft.com/entra/identity-platform/certificate-credentials#assertion-format", certificate_assertion, mutants: [("", "aud is exactly the token endpoint"), ("", "gets a token with its certificate"), ("--good-assertion --rs512", "alg is RS256 or PS256"), ("--good-assertion --iss-tenant", "iss and sub are the client id"), ("--good-assertion --no-jti", "jti is present")]),
        scenario!("ENTRA-CACHE-001", "entra", "token", "Reuses a token within its lifetime", "https://learn.microsoft.com/entra/identity-platform/msal-acquire-cache-tokens", token_reuse, mutants: [("", "one token request serves all three"), ("--bad-scope", "needs a token three times")]),
        scenario!("ENTRA-ERROR-001", "entra", "token", "Surfaces an AADSTS error and does not retry a 4xx", "https://learn.microsoft.com/entra/identity-platform/reference-error-codes", error_surfaced, mutants: [("", "non-zero exit")]),
        scenario!("ENTRA-REFRESH-001", "entra", "token", "Gets a new token before the cached one expires", "https://learn.microsoft.com/entra/identity-platform/msal-acquire-cache-tokens#acquiring-tokens", refresh_before_expiry, mutants: [("--cache-no-margin", "renewed before use"), ("--bad-scope", "needs a token twice")]),
        scenario!("ENTRA-CERT-002", "entra", "token", "Reports AADSTS700027 when its certificate is no longer registered, without retrying", "https://learn.microsoft.com/entra/identity-platform/reference-error-codes#aadsts-error-codes", certificate_removed, mutants: [("--good-assertion", "non-zero exit"), ("--good-assertion --hot-retry --raise", "not retried")]),
        scenario!("ENTRA-TLS-001", "entra", "token", "Refuses a server certificate its CA bundle does not trust", "https://www.rfc-editor.org/rfc/rfc9110#section-4.3.4", refuses_untrusted_server, mutants: [("--insecure", "no token request reaches a server it does not trust")]),
        scenario!("ENTRA-ERROR-002", "entra", "token", "Reports AADSTS700016 (application not found) without retrying", "https://learn.microsoft.com/entra/identity-platform/reference-error-codes#aadsts-error-codes", unknown_application_reported, mutants: [("", "non-zero exit"), ("--hot-retry --raise", "not retried")]),
        scenario!("ENTRA-ERROR-003", "entra", "token", "Reports AADSTS7000222 (expired client secret) without retrying", "https://learn.microsoft.com/entra/identity-platform/reference-error-codes#aadsts-error-codes", expired_secret_reported, mutants: [("", "non-zero exit"), ("--hot-retry --raise", "not retried")]),
        scenario!("ENTRA-RETRY-001", "entra", "token", "Retries a 503 from the token endpoint with a bounded backoff", "https://learn.microsoft.com/entra/identity-platform/msal-error-handling-python#retrying-after-errors-and-exceptions", retries_server_errors, mutants: [("", "gets its token after two 503 answers"), ("--hot-retry", "waits before each retry")]),
        scenario!("ENTRA-RETRY-002", "entra", "token", "Gives up cleanly when the token endpoint keeps failing", "https://learn.microsoft.com/entra/identity-platform/msal-error-handling-python#retrying-after-errors-and-exceptions", gives_up_on_persistent_errors, mutants: [("", "non-zero exit"), ("--hot-retry --raise", "a bounded number of attempts")]),
        scenario!("ENTRA-THROTTLE-001", "entra", "token", "Honours Retry-After on a 429 from the token endpoint", "https://learn.microsoft.com/entra/identity-platform/msal-error-handling-python#retrying-after-errors-and-exceptions", retry_after_honoured, mutants: [("", "Retry-After"), ("--no-retry", "gets its token after the throttled attempt")]),
    ]
}

fn tokens(journal: &[Value]) -> Vec<&Value> {
    of_operation(journal, "entra.token")
}

fn evidence(entries: &[&Value]) -> Vec<String> {
    entries.iter().map(|e| summarize(e)).collect()
}

/// The client exits 0 having reported `needs` acquired tokens.
fn acquired(rule: &str, run: &ClientRun, needs: usize) -> Check {
    let got = run
        .lines
        .iter()
        .filter(|l| l["token"] == "acquired")
        .count();
    Check::new(
        rule,
        run.succeeded() && got == needs,
        format!("{got} of {needs} tokens reported; {}", run.describe()),
    )
}

/// "The client fails (non-zero exit) instead of pretending."
fn fails_loudly(run: &ClientRun) -> Check {
    Check::new(
        "the client fails (non-zero exit) instead of pretending",
        !run.succeeded() && run.exit_code.is_some(),
        run.describe(),
    )
}

/// A final 4xx from the token endpoint: the client fails, reports `code` (or Entra's `error`
/// string `error`), and sends no second request.
fn final_error_checks(
    run: &ClientRun,
    t: &[&Value],
    code: &str,
    error: &str,
    context: String,
) -> Vec<Check> {
    let reported = run.reported_error().unwrap_or_default();
    vec![
        fails_loudly(run),
        Check::new(
            format!("the client reports AADSTS{code} (or {error})"),
            reported.contains(code) || reported == error,
            format!("reported error {reported:?}{context}"),
        ),
        Check::new(
            format!("the {error} answer is not retried"),
            t.len() == 1,
            format!("{} token requests", t.len()),
        )
        .with_evidence(evidence(t)),
    ]
}

async fn secret_token(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    let run = ctx.run_client("token", Cred::Secret, &[]).await?;
    let journal = ctx.journal().await?;
    let t = tokens(&journal);
    let ok: Vec<&Value> = t.iter().copied().filter(|e| e["status"] == 200).collect();
    Ok(vec![
        Check::new(
            "the client reports the token it acquired",
            run.succeeded() && run.lines.iter().any(|l| l["token"] == "acquired"),
            run.describe(),
        ),
        Check::new(
            "a token request with the client secret succeeded",
            !ok.is_empty(),
            format!("{} token requests, {} answered 200", t.len(), ok.len()),
        )
        .with_evidence(evidence(&t)),
    ])
}

async fn certificate_assertion(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    let run = ctx.run_client("token", Cred::Certificate, &[]).await?;
    let journal = ctx.journal().await?;
    let app = ctx.target.collector()?;
    let t = tokens(&journal);
    let mut checks = vec![acquired(
        "the client gets a token with its certificate",
        &run,
        1,
    )];
    let Some(entry) = t.iter().find(|e| e["assertion"].is_object()) else {
        checks.push(
            Check::new(
                "the token request carries a client assertion",
                false,
                "no token request with a client_assertion",
            )
            .with_evidence(evidence(&t)),
        );
        return Ok(checks);
    };
    let ev = vec![
        summarize(entry),
        format!("assertion: {}", entry["assertion"]),
    ];
    let header = &entry["assertion"]["header"];
    let claims = &entry["assertion"]["claims"];
    let endpoint = format!(
        "https://{}{}",
        entry["host"].as_str().unwrap_or_default(),
        entry["path"].as_str().unwrap_or_default()
    );
    let alg = header["alg"].as_str().unwrap_or_default();
    checks.push(
        Check::new(
            "alg is RS256 or PS256",
            alg == "RS256" || alg == "PS256",
            format!("alg {alg:?}"),
        )
        .with_evidence(ev.clone()),
    );
    let x5t = header["x5t"].as_str();
    let x5t256 = header["x5t#S256"].as_str();
    let thumb = |hex: Option<&String>| hex.map(|h| h.to_ascii_lowercase()).unwrap_or_default();
    let b64hex = |b64: &str| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(b64.trim_end_matches('='))
            .map(|b| b.iter().map(|x| format!("{x:02x}")).collect::<String>())
            .unwrap_or_default()
    };
    let matches = x5t.is_some_and(|v| b64hex(v) == thumb(app.thumbprint_sha1.as_ref()))
        || x5t256.is_some_and(|v| b64hex(v) == thumb(app.thumbprint_sha256.as_ref()));
    checks.push(
        Check::new(
            "the x5t / x5t#S256 header names the signing certificate",
            matches,
            format!("x5t {x5t:?}, x5t#S256 {x5t256:?}"),
        )
        .with_evidence(ev.clone()),
    );
    checks.push(
        Check::new(
            "aud is exactly the token endpoint",
            claims["aud"] == endpoint.as_str(),
            format!("aud {} vs {endpoint}", claims["aud"]),
        )
        .with_evidence(ev.clone()),
    );
    let client = app.client_id.as_str();
    checks.push(
        Check::new(
            "iss and sub are the client id",
            claims["iss"] == client && claims["sub"] == client,
            format!("iss {}, sub {}", claims["iss"], claims["sub"]),
        )
        .with_evidence(ev.clone()),
    );
    checks.push(
        Check::new(
            "jti is present",
            claims["jti"].as_str().is_some_and(|j| !j.is_empty()),
            format!("jti {}", claims["jti"]),
        )
        .with_evidence(ev.clone()),
    );
    let start = claims["nbf"]
        .as_i64()
        .or(claims["iat"].as_i64())
        .unwrap_or(0);
    let lifetime = claims["exp"].as_i64().unwrap_or(0) - start;
    checks.push(
        Check::advice(
            "the assertion lives 10 minutes or less",
            lifetime > 600,
            format!("exp - nbf/iat = {lifetime} s"),
        )
        .with_evidence(ev),
    );
    Ok(checks)
}

async fn token_reuse(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    let run = ctx
        .run_client(
            "token",
            Cred::Secret,
            &[("M365_CONFORMANCE_REPEAT", "3".into())],
        )
        .await?;
    let journal = ctx.journal().await?;
    let t = tokens(&journal);
    Ok(vec![
        acquired("the client needs a token three times and gets it", &run, 3),
        Check::new(
            "one token request serves all three (cache)",
            t.len() == 1,
            format!("{} token requests", t.len()),
        )
        .with_evidence(evidence(&t)),
    ])
}

async fn error_surfaced(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    ctx.target
        .add_fault(
            json!({"match": {"operation": "entra.token"}, "action": {"error": "AADSTS7000215"}}),
        )
        .await?;
    let run = ctx.run_client("token", Cred::Secret, &[]).await?;
    let journal = ctx.journal().await?;
    Ok(final_error_checks(
        &run,
        &tokens(&journal),
        "7000215",
        "invalid_client",
        String::new(),
    ))
}

async fn retry_after_honoured(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    let body = json!({"error": "temporarily_unavailable", "error_description": "AADSTS90055: The request was throttled. Retry after the time in the Retry-After header.", "error_codes": [90055]});
    ctx.target
        .add_fault(json!({"match": {"operation": "entra.token"}, "action": {"status": 429, "headers": {"Retry-After": "2"}, "body": body}, "schedule": {"first": 1}}))
        .await?;
    let run = ctx.run_client("token", Cred::Secret, &[]).await?;
    let journal = ctx.journal().await?;
    let t = tokens(&journal);
    let mut checks = vec![acquired(
        "the client gets its token after the throttled attempt",
        &run,
        1,
    )];
    match (t.first(), t.get(1)) {
        (Some(first), Some(second)) => {
            let waited = time_of(second) - time_of(first);
            checks.push(
                Check::new(
                    "no request before Retry-After (2 s) has passed",
                    waited >= 1.95,
                    format!("retried after {waited:.2} s"),
                )
                .with_evidence(evidence(&t)),
            );
        }
        _ => checks.push(
            Check::new(
                "the client retries after a 429",
                false,
                format!("{} token requests", t.len()),
            )
            .with_evidence(evidence(&t)),
        ),
    }
    Ok(checks)
}

/// The token endpoint's transient failure, as Entra words it.
fn transient_error() -> Value {
    json!({"error": "temporarily_unavailable", "error_description": "AADSTS90033: A transient error has occurred. Please try again.", "error_codes": [90033]})
}

/// Tokens live 60 s; the client needs one, waits 4 s, needs one again: the cached token then
/// has under a minute left, and a client that renews ahead of expiry (MSAL and azure-identity
/// renew within 5 minutes of it) asks for a new one instead of sending one about to expire.
async fn refresh_before_expiry(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    const LIFETIME: f64 = 60.0;
    const PAUSE: f64 = 4.0;
    ctx.target
        .entra_settings(json!({"token_lifetime_seconds": LIFETIME as i64}))
        .await?;
    let run = ctx
        .run_client(
            "token",
            Cred::Secret,
            &[
                ("M365_CONFORMANCE_REPEAT", "2".into()),
                ("M365_CONFORMANCE_PAUSE_SECONDS", PAUSE.to_string()),
            ],
        )
        .await?;
    let journal = ctx.journal().await?;
    let t = tokens(&journal);
    let ok: Vec<&Value> = t.iter().copied().filter(|e| e["status"] == 200).collect();
    let mut checks = vec![acquired(
        "the client needs a token twice and gets it",
        &run,
        2,
    )];
    let renewed = match (ok.first(), ok.get(1)) {
        (Some(first), Some(second)) => {
            let age = time_of(second) - time_of(first);
            format!(
                "the second token request came {age:.1} s after the first, {:.1} s before that token's expiry",
                LIFETIME - age
            )
        }
        _ => format!(
            "{} successful token requests: the second need was served a token with under {:.0} s left",
            ok.len(),
            LIFETIME - PAUSE
        ),
    };
    checks.push(
        Check::new(
            "a cached token about to expire (under a minute left) is renewed before use, not sent",
            ok.len() == 2 && time_of(ok[1]) - time_of(ok[0]) < LIFETIME,
            renewed,
        )
        .with_evidence(evidence(&t)),
    );
    Ok(checks)
}

async fn certificate_removed(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    // The certificate is rotated out of the app registration; the client still holds it.
    let app = ctx.target.collector()?;
    let removed = ctx.target.remove_key_credentials(&app.client_id).await?;
    let run = ctx.run_client("token", Cred::Certificate, &[]).await?;
    let journal = ctx.journal().await?;
    Ok(final_error_checks(
        &run,
        &tokens(&journal),
        "700027",
        "invalid_client",
        format!("; {removed} key credential(s) removed"),
    ))
}

async fn refuses_untrusted_server(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    // A CA of its own, unrelated to the emulator's: a client that checks certificates against
    // the bundle it is given cannot talk to the emulator.
    let other = m365_emulator::pki::Pki::load_or_create(
        &ctx.dir.join("unrelated-ca"),
        m365_emulator::pki::KeySource { seed: None },
    )
    .map_err(|e| anyhow::anyhow!("making an unrelated CA: {e}"))?;
    let ca = other.ca_path().display().to_string();
    let vars = [
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
        "NODE_EXTRA_CA_CERTS",
        "CURL_CA_BUNDLE",
    ];
    let extra: Vec<(&str, String)> = vars.iter().map(|v| (*v, ca.clone())).collect();
    let run = ctx.run_client("token", Cred::Secret, &extra).await?;
    let journal = ctx.journal().await?;
    let t = tokens(&journal);
    Ok(vec![
        Check::new(
            "no token request reaches a server it does not trust",
            t.is_empty(),
            format!("{} token requests arrived", t.len()),
        )
        .with_evidence(evidence(&t)),
        fails_loudly(&run),
    ])
}

async fn unknown_application_reported(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    let unknown = uuid::Uuid::new_v4().to_string();
    let run = ctx
        .run_client(
            "token",
            Cred::Secret,
            &[("AZURE_CLIENT_ID", unknown.clone())],
        )
        .await?;
    let journal = ctx.journal().await?;
    Ok(final_error_checks(
        &run,
        &tokens(&journal),
        "700016",
        "unauthorized_client",
        format!(" for client id {unknown}"),
    ))
}

async fn expired_secret_reported(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    // The default world gives the collector a secret that expired at the end of 2024.
    let world = ctx
        .target
        .admin(reqwest::Method::GET, "world", None)
        .await?;
    let app = ctx.target.collector()?;
    let now = time::OffsetDateTime::now_utc();
    let expired = world["applications"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["client_id"] == app.client_id.as_str())
        .flat_map(|a| a["secrets"].as_array().cloned().unwrap_or_default())
        .find(|s| {
            s["expires"].as_str().is_some_and(|e| {
                time::OffsetDateTime::parse(e, &time::format_description::well_known::Rfc3339)
                    .is_ok_and(|e| e < now)
            })
        })
        .and_then(|s| s["value"].as_str().map(str::to_string))
        .ok_or_else(|| anyhow::anyhow!("the world gives the collector no expired secret"))?;
    let run = ctx
        .run_client("token", Cred::Secret, &[("AZURE_CLIENT_SECRET", expired)])
        .await?;
    let journal = ctx.journal().await?;
    Ok(final_error_checks(
        &run,
        &tokens(&journal),
        "7000222",
        "invalid_client",
        " (the secret expired on 2024-12-31)".into(),
    ))
}

async fn retries_server_errors(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    ctx.target
        .add_fault(json!({"match": {"operation": "entra.token"}, "action": {"status": 503, "body": transient_error()}, "schedule": {"first": 2}}))
        .await?;
    let run = ctx.run_client("token", Cred::Secret, &[]).await?;
    let journal = ctx.journal().await?;
    let t = tokens(&journal);
    let waits = gaps(&t);
    Ok(vec![
        Check::new(
            "the client gets its token after two 503 answers",
            run.succeeded() && t.last().is_some_and(|e| e["status"] == 200),
            run.describe(),
        )
        .with_evidence(evidence(&t)),
        waits_before_each_retry(&waits, evidence(&t)),
    ])
}

async fn gives_up_on_persistent_errors(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    ctx.target
        .add_fault(json!({"match": {"operation": "entra.token"}, "action": {"status": 503, "body": transient_error()}}))
        .await?;
    let run = ctx.run_client("token", Cred::Secret, &[]).await?;
    let journal = ctx.journal().await?;
    let t = tokens(&journal);
    let reported = run.reported_error().unwrap_or_default();
    Ok(vec![
        bounded_attempts(t.len(), evidence(&t)),
        Check::new(
            "the client fails (non-zero exit) and reports the error",
            !run.succeeded()
                && run.exit_code.is_some()
                && (reported.contains("90033") || reported.contains("temporarily_unavailable")),
            format!("{}; reported error {reported:?}", run.describe()),
        ),
    ])
}
