//! The HTML pages of the user flows: sign-in, consent, form_post relay and error. Every value
//! that reaches a page is HTML-escaped; pages carry no script except form_post's auto-submit.

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
*{box-sizing:border-box}
body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;
 font-family:"Segoe UI","Segoe UI Web",-apple-system,BlinkMacSystemFont,Roboto,"Helvetica Neue",Arial,sans-serif;
 background:linear-gradient(135deg,#e8eef7 0%,#f3f2f1 60%,#e1e9f5 100%);color:#1b1b1b}
.card{width:440px;max-width:calc(100vw - 32px);background:#fff;padding:44px;box-shadow:0 2px 6px rgba(0,0,0,.2)}
.brand{display:flex;align-items:center;gap:10px;font-size:15px;color:#5e5e5e;margin-bottom:16px}
.logo{display:grid;grid-template-columns:10px 10px;gap:2px}
.logo span{width:10px;height:10px;display:block}
h1{font-size:24px;font-weight:600;margin:0 0 12px}
p{font-size:15px;line-height:1.45;margin:8px 0}
.muted{color:#5e5e5e;font-size:13px}
label{display:block;font-size:13px;color:#5e5e5e;margin-top:12px}
input[type=text],input[type=password]{width:100%;font-size:15px;padding:6px 0;border:0;border-bottom:1px solid #666;outline:none;margin-top:4px}
input[type=text]:focus,input[type=password]:focus{border-bottom:2px solid #0067b8}
.error{color:#e81123;font-size:14px;margin:8px 0}
.actions{display:flex;justify-content:flex-end;gap:8px;margin-top:28px}
button{min-width:108px;font-size:15px;padding:6px 12px;border:0;cursor:pointer}
.primary{background:#0067b8;color:#fff}
.primary:hover{background:#005da6}
.secondary{background:#ccc;color:#1b1b1b}
ul.perms{padding-left:20px;margin:8px 0}
ul.perms li{margin:6px 0;font-size:14px}
.app{display:flex;gap:12px;align-items:center;margin:12px 0}
.appicon{width:44px;height:44px;background:#0067b8;color:#fff;display:flex;align-items:center;justify-content:center;font-weight:600;font-size:18px}
.code{font-family:Consolas,monospace;font-size:12px;background:#f3f2f1;padding:8px;word-break:break-all}
footer{margin-top:24px;font-size:12px;color:#767676}
"#;

/// Wraps a page body in the product frame.
pub fn frame(title: &str, body: &str) -> String {
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><style>{STYLE}</style></head>
<body><main class="card">
<div class="brand"><div class="logo"><span style="background:#f25022"></span><span style="background:#7fba00"></span><span style="background:#00a4ef"></span><span style="background:#ffb900"></span></div>m365-emulator</div>
{body}
<footer>Local emulation of Microsoft Entra ID. No data leaves this machine.</footer>
</main></body></html>"#,
        title = escape(title),
    )
}

/// The sign-in page. `error` is shown above the form.
pub fn sign_in(
    action: &str,
    flow: &str,
    csrf: &str,
    app_name: &str,
    login_hint: Option<&str>,
    error: Option<&str>,
) -> String {
    let error = error
        .map(|e| format!(r#"<p class="error" role="alert">{}</p>"#, escape(e)))
        .unwrap_or_default();
    let body = format!(
        r#"<h1>Sign in</h1>
<p class="muted">to continue to {app}</p>
{error}
<form method="post" action="{action}">
<input type="hidden" name="flow" value="{flow}"><input type="hidden" name="csrf" value="{csrf}">
<label for="username">Email, phone, or Skype</label>
<input type="text" id="username" name="username" autocomplete="username" value="{hint}" required autofocus>
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required>
<div class="actions"><button type="submit" class="primary" id="idSIButton9">Sign in</button></div>
</form>"#,
        app = escape(app_name),
        action = escape(action),
        flow = escape(flow),
        csrf = escape(csrf),
        hint = escape(login_hint.unwrap_or_default()),
    );
    frame("Sign in to your account", &body)
}

/// One requested permission as the consent page lists it.
pub struct Permission {
    pub resource: String,
    pub name: String,
    pub description: String,
}

/// The consent page.
#[allow(clippy::too_many_arguments)]
pub fn consent(
    action: &str,
    flow: &str,
    csrf: &str,
    app_name: &str,
    publisher: &str,
    user: &str,
    permissions: &[Permission],
    admin: bool,
    org_checkbox: bool,
) -> String {
    let items: String = permissions
        .iter()
        .map(|p| {
            format!(
                "<li><strong>{}</strong> <span class=\"muted\">({})</span><br>{}</li>",
                escape(&p.name),
                escape(&p.resource),
                escape(&p.description)
            )
        })
        .collect();
    let heading = if admin {
        "Permissions requested<br>Review for your organization"
    } else {
        "Permissions requested"
    };
    let org = if org_checkbox {
        r#"<p><label style="display:flex;gap:8px;align-items:center;color:#1b1b1b"><input type="checkbox" name="consent_for_org" value="on"> Consent on behalf of your organization</label></p>"#
    } else {
        ""
    };
    let body = format!(
        r#"<p class="muted">{user}</p>
<h1>{heading}</h1>
<div class="app"><div class="appicon">{initial}</div><div><strong id="app-name">{app}</strong><br><span class="muted">Published by {publisher}</span></div></div>
<p>This app would like to:</p>
<ul class="perms" id="permissions">{items}</ul>
{org}
<p class="muted">Accepting these permissions means that you allow this app to use your data as specified in their terms of service and privacy statement.</p>
<form method="post" action="{action}">
<input type="hidden" name="flow" value="{flow}"><input type="hidden" name="csrf" value="{csrf}">
<div class="actions">
<button type="submit" name="decision" value="cancel" class="secondary" id="cancel">Cancel</button>
<button type="submit" name="decision" value="accept" class="primary" id="accept">Accept</button>
</div></form>"#,
        user = escape(user),
        initial = escape(
            &app_name
                .chars()
                .next()
                .unwrap_or('A')
                .to_uppercase()
                .to_string()
        ),
        app = escape(app_name),
        publisher = escape(publisher),
        action = escape(action),
        flow = escape(flow),
        csrf = escape(csrf),
    );
    frame("Permissions requested", &body)
}

/// The page Entra shows when it cannot redirect (bad client, unregistered reply URL, …).
pub fn error(
    code: u32,
    message: &str,
    trace_id: &str,
    correlation_id: &str,
    timestamp: &str,
) -> String {
    let body = format!(
        r#"<h1>Sorry, but we’re having trouble signing you in.</h1>
<p id="error-code"><strong>AADSTS{code}:</strong> {message}</p>
<p class="muted">Troubleshooting details</p>
<div class="code">Request Id: {trace}<br>Correlation Id: {corr}<br>Timestamp: {ts}</div>"#,
        message = escape(message),
        trace = escape(trace_id),
        corr = escape(correlation_id),
        ts = escape(timestamp),
    );
    frame("Sign in to your account", &body)
}

/// `response_mode=form_post`: an auto-submitting form to the redirect URI.
pub fn form_post(redirect_uri: &str, params: &[(String, String)]) -> String {
    let inputs: String = params
        .iter()
        .map(|(k, v)| {
            format!(
                r#"<input type="hidden" name="{}" value="{}">"#,
                escape(k),
                escape(v)
            )
        })
        .collect();
    format!(
        r#"<!DOCTYPE html><html><head><meta charset="utf-8"><title>Working...</title></head>
<body onload="document.forms[0].submit()"><form method="POST" name="hiddenform" action="{action}">{inputs}
<noscript><p>Script is disabled. Click Submit to continue.</p><input type="submit" value="Submit"></noscript></form></body></html>"#,
        action = escape(redirect_uri),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_is_escaped() {
        let page = sign_in(
            "/t/login",
            "f",
            "c",
            "<script>alert(1)</script>",
            Some("\"><img src=x>"),
            Some("<b>"),
        );
        assert!(!page.contains("<script>alert"));
        assert!(!page.contains("<img src=x>"));
        assert!(page.contains("&lt;script&gt;"));
        let post = form_post(
            "https://app/cb\"><script>",
            &[("state".into(), "<x>".into())],
        );
        assert!(!post.contains("<script>\""));
        assert!(post.contains("&lt;x&gt;"));
    }
}
