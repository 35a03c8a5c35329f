//! `GET /users/{id|upn}` and `GET /me`: the default user properties, enough for SDKs that look
//! the organizer up before creating a meeting.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use http::{Request, StatusCode};
use serde_json::json;

use super::errors::GraphError;
use super::{authenticate, OP_USER};
use crate::state::Core;
use crate::world::User;

pub async fn get(
    State(core): State<Arc<Core>>,
    Path(params): Path<HashMap<String, String>>,
    req: Request<Body>,
) -> Response {
    let (parts, _) = req.into_parts();
    let call = match authenticate(&core, &parts, OP_USER) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let path_user = params.get("user").map(String::as_str);
    let allowed = match (call.caller.user, path_user) {
        (Some(_), None) => call.caller.has_scope(&[
            "User.Read",
            "User.ReadWrite",
            "User.ReadBasic.All",
            "User.Read.All",
            "Directory.Read.All",
        ]),
        (Some(_), Some(_)) => {
            call.caller
                .has_scope(&["User.ReadBasic.All", "User.Read.All", "Directory.Read.All"])
                || call.caller.has_scope(&["User.Read"]) && is_self(&core, &call, path_user)
        }
        (None, _) => call.caller.has_role(&[
            "User.Read.All",
            "User.ReadBasic.All",
            "User.ReadWrite.All",
            "Directory.Read.All",
        ]),
    };
    let user = match call.owner(&core, path_user) {
        Ok(u) => u,
        Err(e) => return call.fail(e),
    };
    if !allowed {
        return call.fail(GraphError::new(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        ));
    }
    let body = user_json(&user, &call.context("users/$entity"));
    call.json(StatusCode::OK, body)
}

fn is_self(core: &Core, call: &super::Call, path_user: Option<&str>) -> bool {
    call.owner(core, path_user)
        .is_ok_and(|u| Some(u.object_id) == call.caller.user)
}

/// A user's default properties as Graph v1.0 returns them.
pub fn user_json(u: &User, context: &str) -> serde_json::Value {
    json!({
        "@odata.context": context,
        "businessPhones": [],
        "displayName": u.display_name,
        "givenName": u.given_name,
        "jobTitle": null,
        "mail": u.user_principal_name,
        "mobilePhone": null,
        "officeLocation": null,
        "preferredLanguage": null,
        "surname": u.surname,
        "userPrincipalName": u.user_principal_name,
        "id": u.object_id,
    })
}
