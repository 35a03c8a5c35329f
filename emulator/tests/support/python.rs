//! Running the real-client Python scripts of tests/clients/ from the venv that scripts/test.sh
//! builds (tests/clients/requirements.txt), with a clean environment and a time limit; on
//! failure (exit status or time-out) the panic message carries the script's stdout and stderr.
//!
//! A test binary with `mod support;` uses it as `support::python`:
//!
//! ```ignore
//! use support::python;
//! let Some(py) = python::test_python() else { return };
//! let run = python::Script::new(&py, "msal_app_only.py")
//!     .trust_ca(&emulator.ca_path())
//!     .env("M365EMU_HTTPS_URL", emulator.https_uri())
//!     .run_ok()
//!     .await;
//! let case = run.case("secret");
//! ```

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Default upper bound for one script run.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// The venv's Python, or `None` when the developer asked to skip (M365EMU_SKIP_CLIENT_TESTS=1);
/// panics otherwise.
pub fn test_python() -> Option<String> {
    match std::env::var("M365EMU_TEST_PYTHON") {
        Ok(p) if !p.is_empty() => {
            assert!(
                Path::new(&p).exists(),
                "M365EMU_TEST_PYTHON={p} does not exist: run scripts/test.sh, which (re)builds .venv"
            );
            Some(p)
        }
        _ if std::env::var("M365EMU_SKIP_CLIENT_TESTS").as_deref() == Ok("1") => {
            eprintln!("SKIPPED: real-client tests (M365EMU_SKIP_CLIENT_TESTS=1)");
            None
        }
        _ => panic!(
            "M365EMU_TEST_PYTHON is not set. Run the tests with scripts/test.sh (e.g. \
             `scripts/test.sh --test clients`): it installs the pinned client libraries of \
             tests/clients/requirements.txt into .venv and sets M365EMU_TEST_PYTHON. \
             (M365EMU_SKIP_CLIENT_TESTS=1 skips these tests.)"
        ),
    }
}

/// `tests/clients/<name>` of the workspace.
pub fn client_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/clients")
        .join(name)
}

/// One run of a Python script: builder, then [`Script::run`] or [`Script::run_ok`].
#[derive(Debug, Clone)]
pub struct Script {
    python: String,
    path: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    timeout: Duration,
}

impl Script {
    /// `name` is a file of tests/clients/ (or an absolute path).
    pub fn new(python: &str, name: &str) -> Script {
        let path = if Path::new(name).is_absolute() {
            PathBuf::from(name)
        } else {
            client_script(name)
        };
        Script {
            python: python.to_string(),
            path,
            args: Vec::new(),
            env: Vec::new(),
            timeout: SCRIPT_TIMEOUT,
        }
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Script {
        self.args.push(arg.into());
        self
    }

    /// Adds (or replaces) one variable of the otherwise cleared environment.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Script {
        let name = name.into();
        self.env.retain(|(k, _)| k != &name);
        self.env.push((name, value.into()));
        self
    }

    /// Trusts this CA only: `REQUESTS_CA_BUNDLE` (requests, hence MSAL and azure-identity)
    /// and `SSL_CERT_FILE` (the ssl module's default context).
    pub fn trust_ca(self, ca_pem_path: &Path) -> Script {
        let ca = ca_pem_path.display().to_string();
        self.env("REQUESTS_CA_BUNDLE", ca.clone())
            .env("SSL_CERT_FILE", ca)
    }

    pub fn timeout(mut self, timeout: Duration) -> Script {
        self.timeout = timeout;
        self
    }

    fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.path.display().to_string())
    }

    /// Runs the script and returns what it did, whatever its exit status; panics only if it
    /// cannot be started or does not finish in time (it and its children are then killed).
    pub async fn run(self) -> ScriptRun {
        let name = self.name();
        let mut cmd = tokio::process::Command::new(&self.python);
        cmd.arg(&self.path)
            .args(&self.args)
            // A clean environment: nothing of the machine's (AZURE_*, CURL_CA_BUNDLE, proxies,
            // PYTHONPATH...) may steer the clients elsewhere.
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "HOME",
                std::env::var("HOME").unwrap_or_else(|_| "/tmp".into()),
            )
            .env("LANG", "C.UTF-8")
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONNOUSERSITE", "1")
            .env("NO_PROXY", "*")
            .env("no_proxy", "*")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // Its own process group, so that a time-out also ends what the script started
        // (a browser, a driver).
        #[cfg(unix)]
        cmd.process_group(0);

        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {} {}: {e}", self.python, self.path.display()));
        let pid = child.id();
        let stdout = Captured::start(child.stdout.take().expect("piped stdout"));
        let stderr = Captured::start(child.stderr.take().expect("piped stderr"));

        let status = match tokio::time::timeout(self.timeout, child.wait()).await {
            Ok(status) => status.unwrap_or_else(|e| panic!("waiting for {name}: {e}")),
            Err(_) => {
                kill_group(pid);
                let _ = child.kill().await;
                let run = ScriptRun::new(None, stdout.finish().await, stderr.finish().await);
                panic!(
                    "{name} did not finish within {:?} (killed, with its process group)\n{}",
                    self.timeout,
                    run.dump()
                );
            }
        };
        ScriptRun::new(Some(status), stdout.finish().await, stderr.finish().await)
    }

    /// [`Script::run`], and panics (with stdout and stderr) unless the script exited 0.
    pub async fn run_ok(self) -> ScriptRun {
        let name = self.name();
        let run = self.run().await;
        assert!(
            run.success(),
            "{name} failed ({}):\n{}",
            run.status_text(),
            run.dump()
        );
        run
    }
}

#[cfg(unix)]
fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid {
        // The group id is the script's pid (process_group(0)); only what it started is in it.
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[cfg(not(unix))]
fn kill_group(_pid: Option<u32>) {}

/// A pipe read to its end in the background, readable so far at any time.
struct Captured {
    buf: Arc<Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Captured {
    fn start(mut pipe: impl AsyncRead + Unpin + Send + 'static) -> Captured {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let task = tokio::spawn(async move {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(&chunk[..n]);
            }
        });
        Captured { buf, task }
    }

    /// Everything read; waits briefly for the end of the pipe (a grandchild may still hold it).
    async fn finish(self) -> String {
        let Captured { buf, mut task } = self;
        if tokio::time::timeout(Duration::from_secs(5), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
        let bytes = buf.lock().unwrap_or_else(|e| e.into_inner()).clone();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// What a script printed, and how it ended.
#[derive(Debug)]
pub struct ScriptRun {
    /// `None` when it was killed after the time-out.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    /// Every stdout line that is a JSON object, in order.
    pub json_lines: Vec<Value>,
}

impl ScriptRun {
    fn new(status: Option<ExitStatus>, stdout: String, stderr: String) -> ScriptRun {
        let json_lines = stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
            .filter(Value::is_object)
            .collect();
        ScriptRun {
            status,
            stdout,
            stderr,
            json_lines,
        }
    }

    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    pub fn status_text(&self) -> String {
        match self.status {
            Some(s) => s.to_string(),
            None => "killed after the time-out".into(),
        }
    }

    /// stdout and stderr, for assertion messages.
    pub fn dump(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }

    /// The JSON lines that carry a `case`.
    pub fn cases(&self) -> impl Iterator<Item = &Value> {
        self.json_lines.iter().filter(|v| v.get("case").is_some())
    }

    /// The JSON line of one case; panics (with the output) if the script reported none.
    pub fn case(&self, name: &str) -> &Value {
        self.cases()
            .find(|c| c["case"] == name)
            .unwrap_or_else(|| panic!("the script reported no case {name:?}\n{}", self.dump()))
    }

    /// The first JSON line that has `key`; panics (with the output) if none has.
    pub fn line_with(&self, key: &str) -> &Value {
        self.json_lines
            .iter()
            .find(|v| v.get(key).is_some())
            .unwrap_or_else(|| {
                panic!(
                    "the script printed no JSON line with {key:?}\n{}",
                    self.dump()
                )
            })
    }
}
