//! The interactive endpoints: `/{tenant}/oauth2/authorize` (v1), `/{tenant}/oauth2/v2.0/authorize`
//! (v2), `/{tenant}/v2.0/adminconsent` and `/{tenant}/adminconsent`, with the sign-in and
//! consent pages they lead to.
//!
//! Errors before the redirect URI is known to be registered render an error page (never a
//! redirect: no open redirector); later errors redirect with `error`, `error_description`,
//! `error_uri` and `state`, as Entra does.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Response};
use http::request::Parts;
use http::{header, HeaderValue, Request, StatusCode};
use uuid::Uuid;

use super::consent;
use super::errors::{format_timestamp, AadError};
use super::flows::{
    insert_bounded, lock, random_token, AuthorizeRequest, CodeGrant, FlowKind, PendingFlow,
    ResponseMode, ScopeSet, Session, CODE_LIFETIME, FLOW_LIFETIME,
};
use super::pages;
use super::{resolve_tenant, TenantRef};
use crate::http::form::{encode, parse_form, Form};
use crate::http::{read_body, Outcome, Scheme};
use crate::jose;
use crate::state::{Core, Directory};
use crate::world::{Application, Tenant, User};

const SESSION_COOKIE: &str = "m365emu_session";
const OP: &str = "entra.authorize";

pub async fn authorize_v1(
    State(core): State<Arc<Core>>,
    Path(tenant): Path<String>,
    parts: Parts,
) -> Response {
    start(&core, &tenant, FlowKind::AuthorizeV1, &parts)
}

pub async fn authorize_v2(
    State(core): State<Arc<Core>>,
    Path(tenant): Path<String>,
    parts: Parts,
) -> Response {
    start(&core, &tenant, FlowKind::AuthorizeV2, &parts)
}

pub async fn admin_consent_v2(
    State(core): State<Arc<Core>>,
    Path(tenant): Path<String>,
    parts: Parts,
) -> Response {
    start(&core, &tenant, FlowKind::AdminConsentV2, &parts)
}

pub async fn admin_consent_legacy(
    State(core): State<Arc<Core>>,
    Path(tenant): Path<String>,
    parts: Parts,
) -> Response {
    start(&core, &tenant, FlowKind::AdminConsentLegacy, &parts)
}

/// An error page (status 400), for errors that must not redirect.
pub(super) fn error_page(core: &Core, parts: &Parts, e: &AadError) -> Response {
    let ctx = super::errors::ErrorContext::from_parts(parts, core.clock.now());
    let html = pages::error(
        e.code,
        &e.message,
        &Uuid::new_v4().to_string(),
        &ctx.correlation_id,
        &format_timestamp(ctx.now),
    );
    let mut resp = (StatusCode::BAD_REQUEST, Html(html)).into_response();
    page_headers(&mut resp);
    let mut outcome = Outcome::new(OP);
    outcome.error_code = Some(e.code_name());
    resp.extensions_mut().insert(outcome);
    resp
}

/// Where and how to send the client back.
struct Reply<'a> {
    redirect_uri: &'a str,
    mode: ResponseMode,
    state: Option<&'a str>,
    /// v2 admin consent adds `admin_consent=True` to errors too.
    admin_consent_flag: bool,
}

fn redirect(
    reply: &Reply<'_>,
    mut params: Vec<(String, String)>,
    extra_headers: Vec<(header::HeaderName, String)>,
) -> Response {
    if let Some(state) = reply.state {
        params.push(("state".into(), state.to_string()));
    }
    let mut resp = match reply.mode {
        ResponseMode::FormPost => {
            Html(pages::form_post(reply.redirect_uri, &params)).into_response()
        }
        ResponseMode::Query | ResponseMode::Fragment => {
            let encoded = params
                .iter()
                .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                .collect::<Vec<_>>()
                .join("&");
            let sep = match reply.mode {
                ResponseMode::Fragment => "#",
                _ if reply.redirect_uri.contains('?') => "&",
                _ => "?",
            };
            let location = format!("{}{sep}{encoded}", with_root_path(reply.redirect_uri));
            let mut r = StatusCode::FOUND.into_response();
            if let Ok(v) = HeaderValue::from_str(&location) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
    };
    for (name, value) in extra_headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            resp.headers_mut().append(name, v);
        }
    }
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    resp
}

/// An error sent back to the (registered) redirect URI; a device-code sign-in has none and
/// shows the error page instead.
fn error_redirect(core: &Core, parts: &Parts, reply: &Reply<'_>, e: &AadError) -> Response {
    if reply.redirect_uri.is_empty() {
        return error_page(core, parts, e);
    }
    let ctx = super::errors::ErrorContext::from_parts(parts, core.clock.now());
    let description = format!(
        "AADSTS{}: {}\r\nTrace ID: {}\r\nCorrelation ID: {}\r\nTimestamp: {}",
        e.code,
        e.message,
        Uuid::new_v4(),
        ctx.correlation_id,
        format_timestamp(ctx.now)
    );
    let mut params = vec![
        ("error".to_string(), e.error.to_string()),
        ("error_description".to_string(), description),
        (
            "error_uri".to_string(),
            format!("{}/error?code={}", ctx.origin, e.code),
        ),
    ];
    if reply.admin_consent_flag {
        params.push(("admin_consent".into(), "True".into()));
    }
    let mut resp = redirect(reply, params, Vec::new());
    let mut outcome = Outcome::new(OP);
    outcome.error_code = Some(e.code_name());
    resp.extensions_mut().insert(outcome);
    resp
}

/// Registered reply URL vs the one asked for: exact, except that loopback `http` URLs match
/// on any port (Entra's "localhost exception", which native apps rely on: MSAL listens on an
/// ephemeral port).
fn reply_url_matches(registered: &str, asked: &str) -> bool {
    if registered == asked {
        return true;
    }
    fn split(u: &str) -> Option<(&str, &str)> {
        let rest = u.strip_prefix("http://")?;
        let (authority, path) = rest
            .find('/')
            .map_or((rest, ""), |i| (&rest[..i], &rest[i..]));
        let host = crate::http::host_without_port(authority);
        matches!(host, "localhost" | "127.0.0.1" | "::1")
            .then_some((host, path.trim_end_matches('/')))
    }
    matches!((split(registered), split(asked)), (Some(a), Some(b)) if a == b)
}

/// A redirect URI without a path gets `/` before its query or fragment, as Entra sends it.
fn with_root_path(uri: &str) -> String {
    let after_scheme = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    if after_scheme.contains(['/', '?', '#']) {
        uri.to_string()
    } else {
        format!("{uri}/")
    }
}

fn reply_of(req: &AuthorizeRequest) -> Reply<'_> {
    Reply {
        redirect_uri: &req.redirect_uri,
        mode: req.response_mode,
        state: req.state.as_deref(),
        admin_consent_flag: req.kind == FlowKind::AdminConsentV2,
    }
}

/// Validates the request; returns the pending flow or the response to send.
fn start(core: &Core, tenant_segment: &str, kind: FlowKind, parts: &Parts) -> Response {
    let q = match parse_form(parts.uri.query().unwrap_or_default().as_bytes()) {
        Ok(q) => q,
        Err(e) => return error_page(core, parts, &AadError::new(9002313, &[&format!("{e}.")])),
    };
    let request = {
        let dir = core.directory();
        match validate(&dir, tenant_segment, kind, &q) {
            Ok(r) => r,
            Err(Failure::Page(e)) => return error_page(core, parts, &e),
            Err(Failure::Redirect(req, e)) => {
                return error_redirect(core, parts, &reply_of(&req), &e)
            }
        }
    };
    begin(core, parts, tenant_segment, request)
}

/// Starts sign-in for a validated request: an existing session, auto sign-in, or the page.
pub(super) fn begin(
    core: &Core,
    parts: &Parts,
    tenant_segment: &str,
    request: AuthorizeRequest,
) -> Response {
    let req = request.clone();
    with_context(
        begin_sign_in(core, parts, tenant_segment, request),
        &req,
        None,
    )
}

fn begin_sign_in(
    core: &Core,
    parts: &Parts,
    tenant_segment: &str,
    request: AuthorizeRequest,
) -> Response {
    let now = core.clock.now();
    let flow_id = random_token(32);
    let mut flow = PendingFlow {
        request,
        csrf: random_token(24),
        user: None,
        created: now,
    };
    let prompt = flow.request.prompt.clone();
    // An existing browser session signs the user in, unless the client insists on a login.
    if !matches!(prompt.as_deref(), Some("login") | Some("select_account")) {
        if let Some(session) = session_of(core, parts) {
            let dir = core.directory();
            let hint_ok = flow.request.login_hint.as_ref().is_none_or(|h| {
                user_by_id(&dir, &session.tenant, &session.user)
                    .is_some_and(|(_, u)| u.user_principal_name.eq_ignore_ascii_case(h))
            });
            if hint_ok {
                flow.user = Some((session.tenant, session.user));
            }
        }
    }
    // The headless path: with auto sign-in on, `login_hint` names the user.
    if flow.user.is_none() && core.settings.auto_sign_in {
        if let Some(hint) = flow.request.login_hint.clone() {
            let dir = core.directory();
            if let Some((t, u)) = user_by_upn(&dir, &hint) {
                flow.user = Some((t.id, u.object_id));
            }
        }
    }
    if flow.user.is_none() {
        if prompt.as_deref() == Some("none") {
            let e = AadError::new(50058, &[]);
            return error_redirect(core, parts, &reply_of(&flow.request), &e);
        }
        let page = {
            let dir = core.directory();
            let app_name = dir
                .application(&flow.request.client_id)
                .map(|a| a.display_name.clone())
                .unwrap_or_default();
            pages::sign_in(
                &format!("/{}/login", encode(tenant_segment)),
                &flow_id,
                &flow.csrf,
                &app_name,
                flow.request.login_hint.as_deref(),
                None,
            )
        };
        insert_bounded(&core.flows.pending, flow_id, flow);
        return page_response(page);
    }
    after_sign_in(core, parts, flow_id, flow, false)
}

pub(super) fn page_response(html: String) -> Response {
    let mut resp = Html(html).into_response();
    page_headers(&mut resp);
    resp.extensions_mut().insert(Outcome::new(OP));
    resp
}

/// No caching, no framing, no script: every page of the flows.
fn page_headers(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action *; frame-ancestors 'none'",
        ),
    );
}

/// Fills the journal facts of a flow's response (client, tenant, user) where still unset.
fn with_context(
    mut resp: Response,
    req: &AuthorizeRequest,
    user: Option<(Uuid, Uuid)>,
) -> Response {
    let mut outcome = resp
        .extensions()
        .get::<Outcome>()
        .cloned()
        .unwrap_or_else(|| Outcome::new(OP));
    outcome
        .client_id
        .get_or_insert_with(|| req.client_id.to_string());
    match user {
        Some((tenant, user)) => {
            outcome.tenant.get_or_insert_with(|| tenant.to_string());
            outcome.user.get_or_insert_with(|| user.to_string());
        }
        None => {
            outcome
                .tenant
                .get_or_insert_with(|| req.tenant_segment.clone());
        }
    }
    resp.extensions_mut().insert(outcome);
    resp
}

enum Failure {
    Page(AadError),
    Redirect(Box<AuthorizeRequest>, AadError),
}

impl Failure {
    fn redirect(req: &AuthorizeRequest, e: AadError) -> Failure {
        Failure::Redirect(Box::new(req.clone()), e)
    }
}

fn validate(
    dir: &Directory,
    tenant_segment: &str,
    kind: FlowKind,
    q: &Form,
) -> Result<AuthorizeRequest, Failure> {
    let tenant_ref = resolve_tenant(dir, tenant_segment).map_err(Failure::Page)?;
    let client_text = q
        .non_empty("client_id")
        .ok_or_else(|| Failure::Page(AadError::new(900144, &["client_id"])))?;
    let dir_name = match tenant_ref {
        TenantRef::Tenant(t) => t.display_name.clone(),
        TenantRef::Alias(a) => a.to_string(),
    };
    let app = Uuid::parse_str(client_text)
        .ok()
        .and_then(|id| dir.application(&id))
        .ok_or_else(|| Failure::Page(AadError::new(700016, &[client_text, &dir_name])))?;
    if let TenantRef::Alias(_) = tenant_ref {
        if !app.multi_tenant {
            return Err(Failure::Page(AadError::new(
                50194,
                &[&app.client_id.to_string(), &app.display_name],
            )));
        }
    }
    let redirect_uri = match q.non_empty("redirect_uri") {
        Some(r) => r.to_string(),
        None => app.reply_urls.first().cloned().unwrap_or_default(),
    };
    if !app
        .reply_urls
        .iter()
        .any(|r| reply_url_matches(r, &redirect_uri))
    {
        return Err(Failure::Page(AadError::new(
            50011,
            &[&redirect_uri, &app.client_id.to_string()],
        )));
    }
    let response_mode = match q.non_empty("response_mode") {
        None => ResponseMode::Query,
        Some("query") => ResponseMode::Query,
        Some("fragment") => ResponseMode::Fragment,
        Some("form_post") => ResponseMode::FormPost,
        Some(_) => ResponseMode::Query,
    };
    let mut req = AuthorizeRequest {
        kind,
        tenant_segment: tenant_segment.to_string(),
        client_id: app.client_id,
        redirect_uri,
        response_mode,
        state: q.get("state").map(str::to_string),
        nonce: q.non_empty("nonce").map(str::to_string),
        prompt: q.non_empty("prompt").map(str::to_ascii_lowercase),
        login_hint: q.non_empty("login_hint").map(str::to_string),
        code_challenge: None,
        scope_text: q.get("scope").unwrap_or_default().to_string(),
        device_code: None,
        oidc: Vec::new(),
        scopes: Vec::new(),
        resource: q.non_empty("resource").map(str::to_string),
        client_info: q.get("client_info") == Some("1"),
    };
    if let Some(mode) = q.non_empty("response_mode") {
        if !matches!(mode, "query" | "fragment" | "form_post") {
            return Err(Failure::redirect(
                &req,
                AadError::new(
                    9002313,
                    &[&format!("The response_mode '{mode}' is not supported.")],
                ),
            ));
        }
    }
    let interactive = matches!(kind, FlowKind::AuthorizeV1 | FlowKind::AuthorizeV2);
    if interactive {
        match q.non_empty("response_type") {
            None => {
                return Err(Failure::redirect(
                    &req,
                    AadError::new(900144, &["response_type"]),
                ))
            }
            Some("code") => {}
            Some(other) => return Err(Failure::redirect(&req, AadError::new(700054, &[other]))),
        }
        let allowed_prompts: &[&str] = if kind == FlowKind::AuthorizeV1 {
            &[
                "login",
                "none",
                "consent",
                "select_account",
                "admin_consent",
            ]
        } else {
            &["login", "none", "consent", "select_account"]
        };
        if let Some(p) = &req.prompt {
            if !allowed_prompts.contains(&p.as_str()) {
                return Err(Failure::redirect(
                    &req,
                    AadError::new(9002313, &[&format!("The prompt '{p}' is not supported.")]),
                ));
            }
        }
        if let Some(challenge) = q.non_empty("code_challenge") {
            let method = q.non_empty("code_challenge_method").unwrap_or("plain");
            if !matches!(method, "S256" | "plain") || !(43..=128).contains(&challenge.len()) {
                return Err(Failure::redirect(&req, AadError::new(501491, &[])));
            }
            req.code_challenge = Some((challenge.to_string(), method.to_string()));
        }
    } else if tenant_segment.eq_ignore_ascii_case("common")
        || tenant_segment.eq_ignore_ascii_case("consumers")
    {
        // Admin consent needs an organization: the docs say "Do not use 'common'".
        return Err(Failure::redirect(
            &req,
            AadError::new(
                9002313,
                &["Admin consent requires 'organizations' or a tenant."],
            ),
        ));
    }
    match kind {
        FlowKind::AuthorizeV2 | FlowKind::AdminConsentV2 => {
            let scope = q
                .non_empty("scope")
                .ok_or_else(|| Failure::redirect(&req, AadError::new(900144, &["scope"])))?;
            let (oidc, scopes) =
                consent::parse_scopes(dir, app, scope).map_err(|e| Failure::redirect(&req, e))?;
            req.oidc = oidc;
            req.scopes = scopes;
        }
        FlowKind::AuthorizeV1 => {
            if let Some(resource) = &req.resource {
                let res = dir.world.resource(resource).ok_or_else(|| {
                    Failure::redirect(&req, AadError::new(500011, &[resource, &dir_name]))
                })?;
                let declared = consent::declared_scopes(dir, app, &res.app_id_uri);
                req.scopes = vec![(res.app_id_uri.clone(), declared)];
            }
            req.oidc = vec!["openid".into()];
        }
        FlowKind::DeviceCode => {}
        FlowKind::AdminConsentLegacy => {
            req.scopes = consent::declared_scope_set(dir, app);
        }
    }
    Ok(req)
}

fn user_by_upn<'d>(dir: &'d Directory, upn: &str) -> Option<(&'d Tenant, &'d User)> {
    dir.world.tenants.iter().find_map(|t| {
        t.users
            .iter()
            .find(|u| u.user_principal_name.eq_ignore_ascii_case(upn))
            .map(|u| (t, u))
    })
}

fn user_by_id<'d>(
    dir: &'d Directory,
    tenant: &Uuid,
    user: &Uuid,
) -> Option<(&'d Tenant, &'d User)> {
    let t = dir.world.tenants.iter().find(|t| &t.id == tenant)?;
    t.users
        .iter()
        .find(|u| &u.object_id == user)
        .map(|u| (t, u))
}

fn session_of(core: &Core, parts: &Parts) -> Option<Session> {
    let cookies = parts.headers.get_all(header::COOKIE);
    let id = cookies
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.to_string())?;
    lock(&core.flows.sessions).get(&id).cloned()
}

/// Reads the POSTed form of a page; checks the flow id and CSRF token.
async fn page_form(
    core: &Core,
    req: Request<Body>,
) -> Result<(Parts, Form, String, PendingFlow), Response> {
    let (parts, body) = req.into_parts();
    let bytes = match read_body(body, 64 * 1024).await {
        Ok(b) => b,
        Err(_) => {
            return Err(error_page(
                core,
                &parts,
                &AadError::new(9002313, &["The form is too large."]),
            ))
        }
    };
    let form = match parse_form(&bytes) {
        Ok(f) => f,
        Err(e) => {
            return Err(error_page(
                core,
                &parts,
                &AadError::new(9002313, &[&format!("{e}.")]),
            ))
        }
    };
    let flow_id = form.get("flow").unwrap_or_default().to_string();
    let now = core.clock.now();
    // Taken under the lock when valid, so two concurrent posts of one form cannot both pass;
    // the sign-in page puts the flow back when it asks again (wrong password).
    let valid = {
        let mut pending = lock(&core.flows.pending);
        let ok = pending.get(&flow_id).is_some_and(|f| {
            let csrf_ok = form
                .get("csrf")
                .is_some_and(|c| crate::jose::constant_time_eq(c.as_bytes(), f.csrf.as_bytes()));
            csrf_ok && now - f.created < FLOW_LIFETIME
        });
        if ok {
            pending.remove(&flow_id)
        } else {
            None
        }
    };
    match valid {
        Some(f) => Ok((parts, form, flow_id, f)),
        None => Err(error_page(
            core,
            &parts,
            &AadError::with_message(9002313, "Invalid request. This sign-in request is unknown or has expired; start again from the application."),
        )),
    }
}

/// `POST /{tenant}/login`: the sign-in form.
pub async fn login(State(core): State<Arc<Core>>, req: Request<Body>) -> Response {
    let (parts, form, flow_id, mut flow) = match page_form(&core, req).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let username = form.get("username").unwrap_or_default().trim().to_string();
    let password = form.get("password").unwrap_or_default().to_string();
    let outcome_error;
    let retry_message = {
        let dir = core.directory();
        match user_by_upn(&dir, &username) {
            None => {
                outcome_error = "AADSTS50034";
                "We couldn't find an account with that username. (AADSTS50034)".to_string()
            }
            Some((_, u)) if u.password != password => {
                outcome_error = "AADSTS50126";
                "Your account or password is incorrect. (AADSTS50126)".to_string()
            }
            Some((t, u)) => {
                flow.user = Some((t.id, u.object_id));
                outcome_error = "";
                String::new()
            }
        }
    };
    if flow.user.is_none() {
        let app_name = core
            .directory()
            .application(&flow.request.client_id)
            .map(|a| a.display_name.clone())
            .unwrap_or_default();
        let page = pages::sign_in(
            &format!("/{}/login", encode(&flow.request.tenant_segment)),
            &flow_id,
            &flow.csrf,
            &app_name,
            Some(&username),
            Some(&retry_message),
        );
        let mut resp = page_response(page);
        let mut outcome = Outcome::new(OP);
        outcome.error_code = Some(outcome_error.to_string());
        resp.extensions_mut().insert(outcome);
        let resp = with_context(resp, &flow.request, None);
        insert_bounded(&core.flows.pending, flow_id, flow);
        return resp;
    }
    after_sign_in(&core, &parts, flow_id, flow, true)
}

/// The signed-in user is known: check tenant and consent, then show consent or finish.
fn after_sign_in(
    core: &Core,
    parts: &Parts,
    flow_id: String,
    flow: PendingFlow,
    new_session: bool,
) -> Response {
    let (request, user) = (flow.request.clone(), flow.user);
    // The tenant is the one the flow started with, whatever path a form was posted to.
    let tenant_segment = request.tenant_segment.clone();
    let resp = decide_after_sign_in(core, parts, &tenant_segment, flow_id, flow, new_session);
    with_context(resp, &request, user)
}

fn decide_after_sign_in(
    core: &Core,
    parts: &Parts,
    tenant_segment: &str,
    flow_id: String,
    flow: PendingFlow,
    new_session: bool,
) -> Response {
    let Some((tenant_id, user_id)) = flow.user else {
        return error_page(
            core,
            parts,
            &AadError::with_message(9002313, "Invalid request. No user is signed in."),
        );
    };
    let req = &flow.request;
    let reply = reply_of(req);
    let decision = {
        let dir = core.directory();
        let Some((tenant, user)) = user_by_id(&dir, &tenant_id, &user_id) else {
            return error_page(
                core,
                parts,
                &AadError::with_message(9002313, "Invalid request. The user no longer exists."),
            );
        };
        let Some(app) = dir.application(&req.client_id) else {
            return error_page(
                core,
                parts,
                &AadError::new(700016, &[&req.client_id.to_string(), &tenant.display_name]),
            );
        };
        // A tenant-specific authorize URL only signs in that tenant's users.
        if let Ok(TenantRef::Tenant(t)) = resolve_tenant(&dir, tenant_segment) {
            if t.id != tenant.id {
                let idp = super::mint::issuer_v1(&tenant.id.to_string());
                let e = AadError::new(50020, &[&user.user_principal_name, &idp, &t.display_name]);
                return error_redirect(core, parts, &reply, &e);
            }
        }
        let home = dir.tenant(&app.home_tenant).map(|t| t.id);
        if !app.multi_tenant && home != Some(tenant.id) {
            return error_redirect(
                core,
                parts,
                &reply,
                &AadError::new(700016, &[&app.client_id.to_string(), &tenant.display_name]),
            );
        }
        let wants_admin = req.wants_admin_consent();
        if wants_admin && !user.admin {
            return error_redirect(core, parts, &reply, &AadError::new(90094, &[]));
        }
        let missing = consent::missing(&dir, tenant, app, &user.object_id, &req.scopes);
        let no_service_principal = dir.service_principal(tenant, app).is_none();
        let needs_page = wants_admin
            || req.prompt.as_deref() == Some("consent")
            || !missing.is_empty()
            || no_service_principal;
        if needs_page && req.prompt.as_deref() == Some("none") {
            let mut e = AadError::new(65001, &[&app.client_id.to_string(), &app.display_name]);
            e.error = "consent_required";
            return error_redirect(core, parts, &reply, &e);
        }
        if !missing.is_empty()
            && !user.admin
            && missing
                .iter()
                .any(|(_, s)| s.iter().any(|x| consent::needs_admin(x)))
        {
            return error_redirect(core, parts, &reply, &AadError::new(90094, &[]));
        }
        if needs_page && !core.settings.auto_sign_in {
            let shown: &ScopeSet = if wants_admin || missing.is_empty() {
                &req.scopes
            } else {
                &missing
            };
            let permissions = describe(&dir, app, shown, wants_admin);
            let publisher = dir
                .tenant(&app.home_tenant)
                .map(|t| t.display_name.clone())
                .unwrap_or_default();
            Some(pages::consent(
                &format!("/{}/consent", encode(tenant_segment)),
                &flow_id,
                &flow.csrf,
                &app.display_name,
                &publisher,
                &user.user_principal_name,
                &permissions,
                wants_admin,
                user.admin && !wants_admin,
            ))
        } else {
            None
        }
    };
    let session_cookie = new_session.then(|| start_session(core, parts, tenant_id, user_id));
    if let Some(page) = decision {
        insert_bounded(&core.flows.pending, flow_id, flow);
        let mut resp = page_response(page);
        if let Some(c) = session_cookie {
            if let Ok(v) = HeaderValue::from_str(&c) {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
        }
        return resp;
    }
    // Nothing to ask (or auto sign-in): consent as the page's Accept would, then finish.
    if core.settings.auto_sign_in {
        record_consent(core, &flow, false);
    }
    finish(core, parts, &flow, session_cookie)
}

/// The permissions as the consent page lists them.
fn describe(
    dir: &Directory,
    app: &Application,
    scopes: &ScopeSet,
    admin: bool,
) -> Vec<pages::Permission> {
    let mut out = Vec::new();
    for (uri, names) in scopes {
        let res_name = dir
            .world
            .resource(uri)
            .map(|r| r.display_name.clone())
            .unwrap_or_else(|| uri.clone());
        for n in names {
            out.push(pages::Permission {
                resource: res_name.clone(),
                name: n.clone(),
                description: format!(
                    "Delegated permission {n} on {res_name}, on behalf of the signed-in user"
                ),
            });
        }
    }
    if admin {
        for rra in &app.required_resource_access {
            let Some(res) = dir.world.resource(&rra.resource) else {
                continue;
            };
            for role in &rra.app_roles {
                let description = res
                    .app_roles
                    .iter()
                    .find(|r| &r.value == role)
                    .and_then(|r| r.description.clone())
                    .unwrap_or_default();
                out.push(pages::Permission {
                    resource: res.display_name.clone(),
                    name: role.clone(),
                    description: format!(
                        "{description} (application permission, without a signed-in user)"
                    ),
                });
            }
        }
    }
    out
}

fn start_session(core: &Core, parts: &Parts, tenant: Uuid, user: Uuid) -> String {
    let id = random_token(32);
    insert_bounded(
        &core.flows.sessions,
        id.clone(),
        Session {
            tenant,
            user,
            created: core.clock.now(),
        },
    );
    let secure = parts
        .extensions
        .get::<crate::http::ConnInfo>()
        .is_none_or(|c| c.scheme == Scheme::Https);
    format!(
        "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Lax{}",
        if secure { "; Secure" } else { "" }
    )
}

/// Records the consent the flow asked for: tenant-wide for admins, else for the user.
fn record_consent(core: &Core, flow: &PendingFlow, for_org: bool) {
    let Some((tenant, user)) = flow.user else {
        return;
    };
    let mut dir = core.directory_mut();
    let admin = user_by_id(&dir, &tenant, &user).is_some_and(|(_, u)| u.admin);
    if flow.request.wants_admin_consent() || (for_org && admin) {
        consent::grant_admin(
            &mut dir,
            &tenant,
            &flow.request.client_id,
            &flow.request.scopes,
        );
    } else {
        consent::grant_user(
            &mut dir,
            &tenant,
            &user,
            &flow.request.client_id,
            &flow.request.scopes,
        );
    }
}

/// `POST /{tenant}/consent`: Accept or Cancel on the consent page.
pub async fn consent_decision(
    State(core): State<Arc<Core>>,
    Path(_tenant): Path<String>,
    req: Request<Body>,
) -> Response {
    let (parts, form, _flow_id, flow) = match page_form(&core, req).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    if flow.user.is_none() {
        return error_page(
            &core,
            &parts,
            &AadError::with_message(9002313, "Invalid request. No user is signed in."),
        );
    }
    match form.get("decision") {
        Some("accept") => {
            record_consent(&core, &flow, form.get("consent_for_org") == Some("on"));
            finish(&core, &parts, &flow, None)
        }
        Some("cancel") => {
            if let Some(dc) = &flow.request.device_code {
                super::device_code::settle(&core, dc, super::flows::DeviceCodeState::Declined);
            }
            if flow.request.kind == FlowKind::AdminConsentLegacy {
                // The legacy endpoint's documented error (no AADSTS code).
                let params = vec![
                    ("error".to_string(), "permission_denied".to_string()),
                    (
                        "error_description".to_string(),
                        "The admin canceled the request".to_string(),
                    ),
                ];
                return with_context(
                    redirect(&reply_of(&flow.request), params, Vec::new()),
                    &flow.request,
                    flow.user,
                );
            }
            let e = AadError::new(65004, &[]);
            error_redirect(&core, &parts, &reply_of(&flow.request), &e)
        }
        _ => error_page(
            &core,
            &parts,
            &AadError::with_message(9002313, "Invalid request. The consent decision is missing."),
        ),
    }
}

/// Issues the code (or the admin-consent result) and redirects.
fn finish(core: &Core, parts: &Parts, flow: &PendingFlow, cookie: Option<String>) -> Response {
    let req = &flow.request;
    let reply = reply_of(req);
    let Some((tenant, user)) = flow.user else {
        return error_page(
            core,
            parts,
            &AadError::with_message(9002313, "Invalid request. No user is signed in."),
        );
    };
    let cookies: Vec<(header::HeaderName, String)> = cookie
        .map(|c| (header::SET_COOKIE, c))
        .into_iter()
        .collect();
    let mut outcome = Outcome::new(OP);
    outcome.tenant = Some(tenant.to_string());
    outcome.client_id = Some(req.client_id.to_string());
    outcome.user = Some(user.to_string());
    let mut resp = match req.kind {
        FlowKind::AdminConsentV2 => redirect(
            &reply,
            vec![
                ("admin_consent".into(), "True".into()),
                ("tenant".into(), tenant.to_string()),
                ("scope".into(), req.scope_text.clone()),
            ],
            cookies,
        ),
        FlowKind::AdminConsentLegacy => redirect(
            &reply,
            vec![
                ("tenant".into(), tenant.to_string()),
                ("admin_consent".into(), "True".into()),
            ],
            cookies,
        ),
        FlowKind::DeviceCode => {
            let approved = req.device_code.as_ref().is_some_and(|dc| {
                super::device_code::settle(
                    core,
                    dc,
                    super::flows::DeviceCodeState::Approved(tenant, user),
                )
            });
            let mut r = if approved {
                page_response(pages::frame(
                    "You're signed in",
                    "<h1>You're signed in</h1><p>You have signed in to the application on your device. You may now close this window.</p>",
                ))
            } else {
                error_page(core, parts, &AadError::new(70020, &[]))
            };
            for (name, value) in cookies {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    r.headers_mut().append(name, v);
                }
            }
            r
        }
        FlowKind::AuthorizeV1 | FlowKind::AuthorizeV2 => {
            let code = random_token(48);
            insert_bounded(
                &core.flows.codes,
                code.clone(),
                CodeGrant {
                    client_id: req.client_id,
                    redirect_uri: req.redirect_uri.clone(),
                    tenant,
                    user,
                    oidc: req.oidc.clone(),
                    scopes: req.scopes.clone(),
                    resource: req.resource.clone(),
                    code_challenge: req.code_challenge.clone(),
                    nonce: req.nonce.clone(),
                    issued: core.clock.now(),
                    redeemed: false,
                },
            );
            let mut params = vec![("code".to_string(), code)];
            if req.client_info {
                params.push(("client_info".into(), client_info(&user, &tenant)));
            }
            params.push(("session_state".into(), Uuid::new_v4().to_string()));
            if req.kind == FlowKind::AuthorizeV1 && req.wants_admin_consent() {
                params.push(("admin_consent".into(), "True".into()));
            }
            redirect(&reply, params, cookies)
        }
    };
    resp.extensions_mut().insert(outcome);
    resp
}

/// `client_info`: base64url JSON `{"uid": …, "utid": …}` (MSAL's home account id).
pub fn client_info(user: &Uuid, tenant: &Uuid) -> String {
    jose::b64url(format!(r#"{{"uid":"{user}","utid":"{tenant}"}}"#).as_bytes())
}

/// How long codes stay redeemable, for the token endpoint.
pub fn code_expired(grant: &CodeGrant, now: time::OffsetDateTime) -> bool {
    now - grant.issued > CODE_LIFETIME
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_reply_urls_match_on_any_port() {
        assert!(reply_url_matches(
            "http://localhost",
            "http://localhost:53123"
        ));
        assert!(reply_url_matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:9/cb"
        ));
        assert!(!reply_url_matches(
            "http://localhost/cb",
            "http://localhost:1/other"
        ));
        assert!(!reply_url_matches(
            "https://localhost:5001/signin",
            "https://localhost:5002/signin"
        ));
        assert!(!reply_url_matches(
            "http://localhost",
            "http://localhost.evil.example"
        ));
        assert_eq!(with_root_path("http://localhost"), "http://localhost/");
        assert_eq!(
            with_root_path("https://localhost:5001/signin"),
            "https://localhost:5001/signin"
        );
    }
}
