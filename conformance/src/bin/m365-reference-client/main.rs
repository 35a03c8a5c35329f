//! `m365-reference-client`: the reference client (crate `m365-reference-client`, in
//! conformance/clients/rust) as a conformance adapter (conformance/CONTRACT.md). The operation
//! comes from `M365_CONFORMANCE_OPERATION`; results go to stdout as JSON lines. One module per
//! service's operations.

mod acs;
mod common;
mod entra;
mod graph;
mod management;

use std::process::ExitCode;

use common::{emit, http};
use m365_reference_client::ClientError;
use serde_json::json;

/// The contract operations this adapter performs.
const OPERATIONS: &[&str] = &[
    "token",
    "audit-sync",
    "audit-webhook",
    "graph-meeting",
    "graph-chat",
    "acs-identity",
    "acs-assignments",
    "acs-request",
];

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let op = std::env::var("M365_CONFORMANCE_OPERATION").unwrap_or_default();
    if op == "describe" || std::env::args().any(|a| a == "--describe") {
        emit(json!({"operations": OPERATIONS}));
        return ExitCode::SUCCESS;
    }
    let result = match http() {
        Err(e) => Err(e),
        Ok(http) => match op.as_str() {
            "token" => entra::token(&http).await,
            "audit-sync" => management::audit_sync(&http).await,
            "audit-webhook" => management::audit_webhook(&http).await,
            "graph-meeting" => graph::meeting(&http).await,
            "graph-chat" => graph::chat(&http).await,
            "acs-identity" => acs::identity(&http).await,
            "acs-assignments" => acs::assignments(&http).await,
            "acs-request" => acs::request(&http).await,
            other => Err(ClientError::Config(format!(
                "unsupported operation {other:?}"
            ))),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            emit(json!({"error": e.code().unwrap_or("client_error"), "message": e.to_string()}));
            eprintln!("m365-reference-client: {e}");
            ExitCode::FAILURE
        }
    }
}
