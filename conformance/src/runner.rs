//! Runs scenarios against a client: resets the emulator, runs the scenario, and turns its
//! checks into a result. Scenarios on one emulator run one after the other (they share its
//! clock, journal and knobs); with several emulators, each runs its own share at once.

use std::collections::{BTreeSet, VecDeque};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::Value;
use tokio::io::AsyncReadExt;

use m365_emulator::ready::ReadyApplication;

use crate::scenario::{Check, Outcome, Scenario, ScenarioResult};
use crate::target::{Target, TENANT};

/// The longest a single client run may take.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(90);

/// How the client authenticates in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cred {
    Secret,
    Certificate,
    /// A public client, with no credential of its own (delegated flows: the password grant).
    Public,
}

/// What one client run produced.
#[derive(Debug, Clone, Default)]
pub struct ClientRun {
    /// `None` when it was killed at the time-out.
    pub exit_code: Option<i32>,
    /// stdout lines that are JSON objects.
    pub lines: Vec<Value>,
    pub stderr: String,
}

impl ClientRun {
    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0)
    }

    /// The `error` the client reported (its last `{"error": …}` line).
    pub fn reported_error(&self) -> Option<String> {
        self.lines
            .iter()
            .rev()
            .find_map(|l| l["error"].as_str().map(str::to_string))
    }

    /// Every `record` id the client output.
    pub fn records(&self) -> Vec<String> {
        self.lines
            .iter()
            .filter_map(|l| l["record"].as_str().map(str::to_string))
            .collect()
    }

    pub fn describe(&self) -> String {
        let tail: String = self
            .stderr
            .lines()
            .rev()
            .take(3)
            .collect::<Vec<_>>()
            .join(" | ");
        format!(
            "exit {:?}, {} JSON lines; stderr tail: {tail}",
            self.exit_code,
            self.lines.len()
        )
    }
}

/// What a scenario works with.
pub struct Ctx<'t> {
    pub target: &'t Target,
    pub client: String,
    /// A directory for this scenario (the client's state file lives here).
    pub dir: PathBuf,
}

impl Ctx<'_> {
    /// The contract's environment for `operation` (see conformance/CONTRACT.md), as the
    /// default world's audit collector.
    pub fn env(&self, operation: &str, cred: Cred) -> Result<Vec<(String, String)>> {
        self.env_as(self.target.collector()?, operation, cred)
    }

    /// The contract's environment for `operation`, as application `app` of the tenant.
    pub fn env_as(
        &self,
        app: &ReadyApplication,
        operation: &str,
        cred: Cred,
    ) -> Result<Vec<(String, String)>> {
        let ca = self.target.ca_path().display().to_string();
        let base = self.target.base().to_string();
        let mut env = vec![
            ("M365_CONFORMANCE_OPERATION".into(), operation.to_string()),
            (
                "M365_CONFORMANCE_STATE".into(),
                self.dir.join("client-state").display().to_string(),
            ),
            ("AZURE_TENANT_ID".into(), TENANT.to_string()),
            ("AZURE_CLIENT_ID".into(), app.client_id.clone()),
            ("AZURE_AUTHORITY_HOST".into(), base.clone()),
            (
                "M365_MANAGEMENT_URL".into(),
                format!("{base}/api/v1.0/{TENANT}/activity/feed"),
            ),
            ("M365_GRAPH_URL".into(), format!("{base}/v1.0")),
        ];
        for var in [
            "SSL_CERT_FILE",
            "REQUESTS_CA_BUNDLE",
            "NODE_EXTRA_CA_CERTS",
            "CURL_CA_BUNDLE",
        ] {
            env.push((var.into(), ca.clone()));
        }
        match cred {
            Cred::Secret => env.push((
                "AZURE_CLIENT_SECRET".into(),
                app.client_secret
                    .clone()
                    .with_context(|| format!("{} has no secret", app.client_id))?,
            )),
            Cred::Certificate => env.push((
                "AZURE_CLIENT_CERTIFICATE_PATH".into(),
                app.certificate_path
                    .as_ref()
                    .with_context(|| format!("{} has no certificate", app.client_id))?
                    .display()
                    .to_string(),
            )),
            Cred::Public => {}
        }
        if let Some(acs) = self.target.ready.acs.first() {
            env.push(("ACS_ENDPOINT".into(), acs.endpoint.clone()));
            env.push((
                "ACS_CONNECTION_STRING".into(),
                acs.connection_string.clone(),
            ));
        }
        Ok(env)
    }

    /// Runs the client once with the contract's environment plus `extra`.
    pub async fn run_client(
        &self,
        operation: &str,
        cred: Cred,
        extra: &[(&str, String)],
    ) -> Result<ClientRun> {
        let mut env = self.env(operation, cred)?;
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        run_command(&self.client, &env).await
    }

    /// Runs the client once as application `app`, with the contract's environment plus
    /// `extra`.
    pub async fn run_client_as(
        &self,
        app: &ReadyApplication,
        operation: &str,
        cred: Cred,
        extra: &[(&str, String)],
    ) -> Result<ClientRun> {
        let mut env = self.env_as(app, operation, cred)?;
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        run_command(&self.client, &env).await
    }

    pub async fn journal(&self) -> Result<Vec<Value>> {
        self.target.journal().await
    }
}

/// Runs `command` through `sh -c` with `env` (overriding the inherited variables of the same
/// names, and removing the other Azure/M365 ones so that a developer's shell cannot leak in).
pub async fn run_command(command: &str, env: &[(String, String)]) -> Result<ClientRun> {
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("AZURE_") || k.starts_with("M365_") || k.starts_with("ACS_") {
            cmd.env_remove(&k);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd.kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run the client: {command}"))?;
    let mut stdout = child.stdout.take().context("stdout")?;
    let mut stderr = child.stderr.take().context("stderr")?;
    let io = async {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let _ = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
        let status = child.wait().await;
        (out, err, status)
    };
    let Ok((out, err, status)) = tokio::time::timeout(CLIENT_TIMEOUT, io).await else {
        return Ok(ClientRun {
            exit_code: None,
            stderr: "killed after the time-out".into(),
            ..Default::default()
        });
    };
    let text = String::from_utf8_lossy(&out);
    Ok(ClientRun {
        exit_code: status.ok().and_then(|s| s.code()),
        lines: text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
            .filter(Value::is_object)
            .collect(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
    })
}

/// The operations the client declares: `--operations` when given, else what the client
/// prints for `M365_CONFORMANCE_OPERATION=describe` (`{"operations": [...]}`).
pub async fn client_operations(client: &str, given: Option<&str>) -> Result<BTreeSet<String>> {
    if let Some(list) = given {
        return Ok(list
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect());
    }
    let run = run_command(
        client,
        &[("M365_CONFORMANCE_OPERATION".into(), "describe".into())],
    )
    .await?;
    let ops = run
        .lines
        .iter()
        .find_map(|l| l["operations"].as_array().cloned())
        .with_context(|| {
            format!(
                "the client did not describe its operations ({})",
                run.describe()
            )
        })?;
    Ok(ops
        .iter()
        .filter_map(|o| o.as_str().map(str::to_string))
        .collect())
}

/// Runs one scenario (SKIPPED when the client does not support its operation).
pub async fn run_scenario(
    target: &Target,
    client: &str,
    scenario: &Scenario,
    operations: &BTreeSet<String>,
    expected: &BTreeSet<String>,
) -> ScenarioResult {
    let started = Instant::now();
    let mut result = ScenarioResult {
        id: scenario.id.into(),
        title: scenario.title.into(),
        requirement: scenario.requirement.into(),
        suite: scenario.suite.into(),
        outcome: Outcome::Skipped,
        expected_failure: expected.contains(scenario.id),
        seconds: 0.0,
        checks: Vec::new(),
        error: None,
    };
    if !operations.contains(scenario.operation) {
        result.checks.push(Check {
            rule: format!("the client supports `{}`", scenario.operation),
            outcome: Outcome::Skipped,
            detail: "not among the client's operations".into(),
            evidence: Vec::new(),
        });
        return result;
    }
    let outcome = async {
        target.reset().await?;
        let dir = tempfile::tempdir()?;
        let ctx = Ctx {
            target,
            client: client.to_string(),
            dir: dir.path().to_path_buf(),
        };
        (scenario.run)(&ctx).await
    }
    .await;
    match outcome {
        Ok(checks) => {
            result.outcome = checks
                .iter()
                .map(|c| c.outcome)
                .max()
                .unwrap_or(Outcome::Passed);
            result.checks = checks;
        }
        Err(e) => {
            result.outcome = Outcome::Failed;
            result.error = Some(format!("{e:#}"));
        }
    }
    result.seconds = started.elapsed().as_secs_f64();
    result
}

/// One scenario to run for one client.
#[derive(Clone)]
pub struct Job {
    pub client: String,
    pub scenario: Scenario,
    pub operations: Arc<BTreeSet<String>>,
    pub expected: Arc<BTreeSet<String>>,
}

/// Runs `scenarios` for `client` on the `targets` (see [`run_jobs`]).
pub async fn run_all(
    targets: Vec<Arc<Target>>,
    client: &str,
    scenarios: &[Scenario],
    operations: &BTreeSet<String>,
    expected: &BTreeSet<String>,
    progress: impl Fn(&ScenarioResult) + Send + Sync + 'static,
) -> Vec<ScenarioResult> {
    let (operations, expected) = (Arc::new(operations.clone()), Arc::new(expected.clone()));
    let jobs = scenarios
        .iter()
        .map(|s| Job {
            client: client.to_string(),
            scenario: *s,
            operations: operations.clone(),
            expected: expected.clone(),
        })
        .collect();
    run_jobs(targets, jobs, progress).await
}

/// Runs the jobs on the `targets`, each emulator taking the next job as soon as it is free,
/// and calls `progress` as each one finishes. Results come back in the jobs' order.
pub async fn run_jobs(
    targets: Vec<Arc<Target>>,
    jobs: Vec<Job>,
    progress: impl Fn(&ScenarioResult) + Send + Sync + 'static,
) -> Vec<ScenarioResult> {
    let queue = Arc::new(Mutex::new(
        jobs.iter().cloned().enumerate().collect::<VecDeque<_>>(),
    ));
    let progress = Arc::new(progress);
    let mut workers = tokio::task::JoinSet::new();
    for target in targets {
        let (queue, progress) = (queue.clone(), progress.clone());
        workers.spawn(async move {
            let mut done = Vec::new();
            loop {
                let next = queue.lock().map(|mut q| q.pop_front()).unwrap_or(None);
                let Some((index, job)) = next else { break };
                let r = run_scenario(
                    &target,
                    &job.client,
                    &job.scenario,
                    &job.operations,
                    &job.expected,
                )
                .await;
                progress(&r);
                done.push((index, r));
            }
            done
        });
    }
    let mut finished = Vec::new();
    while let Some(done) = workers.join_next().await {
        if let Ok(done) = done {
            finished.extend(done);
        }
    }
    finished.sort_by_key(|(index, _)| *index);
    let mut finished = finished.into_iter().peekable();
    // A job whose worker died (a panic in a check) still gets a FAILED result.
    let mut ordered = Vec::with_capacity(jobs.len());
    for (index, job) in jobs.iter().enumerate() {
        let s = &job.scenario;
        match finished.next_if(|(i, _)| *i == index) {
            Some((_, r)) => ordered.push(r),
            None => ordered.push(ScenarioResult {
                id: s.id.into(),
                title: s.title.into(),
                requirement: s.requirement.into(),
                suite: s.suite.into(),
                outcome: Outcome::Failed,
                expected_failure: job.expected.contains(s.id),
                seconds: 0.0,
                checks: Vec::new(),
                error: Some("the scenario's worker stopped unexpectedly".into()),
            }),
        }
    }
    ordered
}
