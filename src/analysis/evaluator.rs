//! Where conditions are evaluated: in worker processes, within the time and memory budget of
//! [`ConditionBudget`], so that no AnalysisTemplate can exhaust the controller.
//!
//! A condition that passed the static caps of [`compile_within`] can still ask for unbounded
//! work from its data (`len(0..result)`, a `map` inside a `map`); expr-lang has no fuel or
//! allocation limit, and a thread cannot be stopped. So the controller evaluates in child
//! processes of its own binary (`sluice __condition-worker`, [`worker_main`]), each of which
//! limits its own memory with `RLIMIT_DATA` when it starts and answers one evaluation at a
//! time as JSON lines on standard input and output. The controller keeps a pool of
//! [`POOL_SIZE`] of them, stops one that runs past the time budget, and starts another in the
//! place of one that stopped or ran out of memory.
//!
//! A worker never outlives the controller: it is killed when its handle is dropped, exits when
//! its standard input closes, and a watchdog thread ends it should the controller vanish while
//! it evaluates.

use std::{
    io::{self, BufRead, Read as _, Write as _},
    path::PathBuf,
    process::{ExitCode, Stdio},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    process::{Child, ChildStderr, ChildStdin, ChildStdout, Command},
    sync::Semaphore,
    task::JoinHandle,
    time::timeout,
};
use tracing::{debug, error, info, warn};

use sluice_analysis::{
    condition::{
        self, Condition, ConditionError, Conditions, EVALUATION_STACK_BYTES, MetricValue,
        compile_within, human_bytes,
    },
    limits::ConditionBudget,
};
use sluice_api::{AnalysisPhase, Metric};

/// The first argument that makes the `sluice` binary an evaluation worker instead of a
/// controller (see [`worker_main`]).
pub const WORKER_ARG: &str = "__condition-worker";

/// The environment variable naming the worker program, when it is not the running binary.
pub const WORKER_ENV: &str = "SLUICE_CONDITION_WORKER";

/// How many worker processes evaluate at once.
pub const POOL_SIZE: usize = 2;

/// The line a worker writes once its limits are set and it is ready for requests.
const READY: &[u8] = b"ready";

/// How long a worker may take to start; not counted in any evaluation's budget.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest answer read from a worker.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The longest message or value a worker puts in an answer.
const MAX_ANSWER_TEXT_BYTES: usize = 4 * 1024;

/// How much of a worker's standard error is kept to explain why it stopped.
const STDERR_TAIL_BYTES: usize = 4 * 1024;

/// How long a worker that closed its output is given to exit before it is killed.
const EXIT_WAIT: Duration = Duration::from_secs(2);

/// What Rust's allocator writes when an allocation fails, as a worker's does past its budget.
const ALLOCATION_FAILED: &str = "memory allocation of";

/// Evaluates metric conditions within a budget; shared by every provider of the process.
///
/// Built by [`Evaluator::new`], it evaluates in worker processes of the program named by
/// `SLUICE_CONDITION_WORKER`, or else of the running binary when that is `sluice`: there the
/// time and memory budgets hold. Anywhere else (the unit tests of the library, `kubectl
/// sluice`) it evaluates in this process, on a thread of its own per evaluation (off the async
/// workers, with [`EVALUATION_STACK_BYTES`] of stack), with the static caps of
/// [`compile_within`] only: a time budget exceeded is reported but the evaluation runs on, and
/// memory is not bounded.
#[derive(Debug)]
pub struct Evaluator {
    budget: ConditionBudget,
    mode: Mode,
}

/// Where an [`Evaluator`] evaluates.
#[derive(Debug)]
enum Mode {
    /// On the blocking pool of this process.
    InProcess,
    /// In worker processes.
    Workers(Pool),
}

impl Evaluator {
    /// An evaluator with this budget, in worker processes where the running binary can be one
    /// (see the type's documentation).
    pub fn new(budget: ConditionBudget) -> Arc<Self> {
        match worker_program() {
            Some(program) => Self::with_worker(budget, program),
            None => Self::in_process(budget),
        }
    }

    /// An evaluator running `program __condition-worker` as its workers (tests name the
    /// `sluice` binary this way).
    pub fn with_worker(budget: ConditionBudget, program: impl Into<PathBuf>) -> Arc<Self> {
        let program = program.into();
        info!(
            program = %program.display(),
            workers = POOL_SIZE,
            max_memory = %human_bytes(budget.max_memory_bytes),
            max_time = ?budget.max_time,
            "conditions are evaluated in worker processes"
        );
        let pool = Pool::new(program, &budget);
        Arc::new(Self {
            budget,
            mode: Mode::Workers(pool),
        })
    }

    /// An evaluator that evaluates in this process, with the static caps only.
    pub fn in_process(budget: ConditionBudget) -> Arc<Self> {
        Arc::new(Self {
            budget,
            mode: Mode::InProcess,
        })
    }

    /// The budget this evaluator enforces.
    pub fn budget(&self) -> &ConditionBudget {
        &self.budget
    }

    /// Whether evaluations run in worker processes, where the time and memory budgets hold.
    pub fn isolated(&self) -> bool {
        matches!(self.mode, Mode::Workers(_))
    }

    /// The phase of a measurement of `metric` with this value, by Argo's rules; an error (a
    /// budget exceeded included) is returned for an Error measurement.
    pub async fn assess(
        &self,
        metric: &Metric,
        value: &MetricValue,
    ) -> Result<AnalysisPhase, ConditionError> {
        let conditions = Conditions::of_within(metric, &self.budget)?;
        if conditions.success.is_none() && conditions.failure.is_none() {
            return Ok(condition::verdict(None, None));
        }
        let input = match &self.mode {
            Mode::InProcess => Input::Value(Arc::new(value.clone())),
            Mode::Workers(_) => Input::Json(serde_json::to_vec(value).map_err(|e| {
                ConditionError::Unavailable {
                    condition: conditions
                        .success
                        .as_ref()
                        .or(conditions.failure.as_ref())
                        .map(|c| c.source().to_owned())
                        .unwrap_or_default(),
                    message: format!("the result could not be encoded: {e}"),
                }
            })?),
        };
        let mut holds = [None, None];
        for (slot, condition) in [&conditions.success, &conditions.failure]
            .into_iter()
            .enumerate()
        {
            if let Some(condition) = condition {
                holds[slot] = Some(self.evaluate(condition, value, &input).await?);
            }
        }
        Ok(condition::verdict(holds[0], holds[1]))
    }

    /// Evaluates one condition on a value (`input` is that value as the mode needs it).
    async fn evaluate(
        &self,
        condition: &Condition,
        value: &MetricValue,
        input: &Input,
    ) -> Result<bool, ConditionError> {
        let source = condition.source();
        let failure = match (&self.mode, input) {
            (Mode::Workers(pool), Input::Json(json)) => {
                match pool.evaluate(&request(source, json)).await {
                    Ok(answer) => return answer.into_result(source, value),
                    Err(failure) => failure,
                }
            }
            (_, Input::Value(value)) => {
                let (owned, value) = (condition.clone(), Arc::clone(value));
                let (sender, evaluation) = tokio::sync::oneshot::channel();
                // A thread of its own rather than the blocking pool's: those have 2 MiB of
                // stack, less than the deepest condition the caps allow needs.
                let started = std::thread::Builder::new()
                    .name("condition".to_owned())
                    .stack_size(EVALUATION_STACK_BYTES)
                    .spawn(move || {
                        // The caller may have stopped waiting: the answer is then dropped.
                        let _ = sender.send(owned.evaluate(&value));
                    });
                match started {
                    Err(e) => Failure::Other(format!("no thread to evaluate on: {e}")),
                    Ok(_) => match timeout(self.budget.max_time, evaluation).await {
                        Ok(Ok(result)) => return result,
                        Ok(Err(_)) => Failure::Other("the evaluation stopped".to_owned()),
                        Err(_) => Failure::Time,
                    },
                }
            }
            (Mode::InProcess, Input::Json(_)) => {
                Failure::Other("the result was prepared for a worker".to_owned())
            }
        };
        let error = match failure {
            Failure::Time => ConditionError::TimeBudget {
                condition: source.to_owned(),
                limit: self.budget.max_time,
            },
            Failure::Memory => ConditionError::MemoryBudget {
                condition: source.to_owned(),
                limit: self.budget.max_memory_bytes,
            },
            Failure::Other(message) => {
                error!(
                    condition = source,
                    message, "a condition could not be evaluated"
                );
                return Err(ConditionError::Unavailable {
                    condition: source.to_owned(),
                    message,
                });
            }
        };
        warn!(condition = source, error = %error, "a condition exceeded its budget");
        Err(error)
    }
}

/// A measured value, ready for the evaluator's mode.
enum Input {
    /// For evaluation in this process.
    Value(Arc<MetricValue>),
    /// Encoded for a worker.
    Json(Vec<u8>),
}

/// Why an evaluation gave no answer.
#[derive(Debug)]
enum Failure {
    /// It ran past the time budget.
    Time,
    /// It needed more than the memory budget.
    Memory,
    /// The worker could not be started or stopped for another reason.
    Other(String),
}

/// The program to run as a worker: `SLUICE_CONDITION_WORKER`, or the running binary when it
/// is `sluice`; `None`: evaluate in this process.
fn worker_program() -> Option<PathBuf> {
    if let Some(program) = std::env::var_os(WORKER_ENV).filter(|p| !p.is_empty()) {
        return Some(program.into());
    }
    let exe = std::env::current_exe().ok()?;
    (exe.file_name()? == "sluice").then_some(exe)
}

/// One request line: a condition and the result to evaluate it on.
fn request(condition: &str, result_json: &[u8]) -> Vec<u8> {
    let quoted = serde_json::Value::String(condition.to_owned()).to_string();
    let mut line = Vec::with_capacity(quoted.len() + result_json.len() + 32);
    line.extend_from_slice(b"{\"condition\":");
    line.extend_from_slice(quoted.as_bytes());
    line.extend_from_slice(b",\"result\":");
    line.extend_from_slice(result_json);
    line.extend_from_slice(b"}\n");
    line
}

/// A request as the worker reads it.
#[derive(Debug, Deserialize)]
struct Request {
    /// The condition's source.
    condition: String,
    /// The value of `result`.
    result: MetricValue,
}

/// A worker's answer to one request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "camelCase")]
enum Answer {
    /// The condition gave true or false.
    Holds {
        /// What it gave.
        holds: bool,
    },
    /// The condition gave something else than a boolean.
    NotBoolean {
        /// What it gave, as text (cut short).
        value: String,
    },
    /// The evaluation failed.
    Failed {
        /// Why (cut short).
        message: String,
    },
}

impl Answer {
    /// The answer as [`Condition::evaluate`] gives it.
    fn into_result(self, condition: &str, value: &MetricValue) -> Result<bool, ConditionError> {
        match self {
            Self::Holds { holds } => Ok(holds),
            Self::NotBoolean { value: gave } => Err(ConditionError::NotBoolean {
                condition: condition.to_owned(),
                value: gave,
                result: condition::display(value),
            }),
            Self::Failed { message } => Err(ConditionError::Evaluate {
                condition: condition.to_owned(),
                result: condition::display(value),
                message,
            }),
        }
    }
}

/// The most bytes of a request a worker accepts: its result must fit in its memory budget
/// several times over (the request, the value read from it, expr's copy).
fn max_request_bytes(budget: &ConditionBudget) -> usize {
    usize::try_from(budget.max_memory_bytes / 4)
        .unwrap_or(usize::MAX)
        .max(64 * 1024)
}

/// The worker processes of an evaluator.
#[derive(Debug)]
struct Pool {
    /// The program run as a worker.
    program: PathBuf,
    /// The budget, as the worker's argument.
    budget_arg: String,
    /// The longest an evaluation may run.
    max_time: Duration,
    /// The longest request a worker accepts.
    max_request_bytes: usize,
    /// One permit per worker that may be busy.
    permits: Semaphore,
    /// Started workers waiting for a request.
    idle: Mutex<Vec<Worker>>,
}

impl Pool {
    /// A pool that starts its workers when first needed.
    fn new(program: PathBuf, budget: &ConditionBudget) -> Self {
        Self {
            program,
            // Serialising plain numbers cannot fail.
            budget_arg: serde_json::to_string(budget).unwrap_or_default(),
            max_time: budget.max_time,
            max_request_bytes: max_request_bytes(budget),
            permits: Semaphore::new(POOL_SIZE),
            idle: Mutex::new(Vec::with_capacity(POOL_SIZE)),
        }
    }

    /// Has a worker answer one request within the time budget.
    async fn evaluate(&self, request: &[u8]) -> Result<Answer, Failure> {
        if request.len() > self.max_request_bytes {
            return Err(Failure::Other(format!(
                "the result is {} encoded, more than the {} a worker accepts",
                human_bytes(request.len() as u64),
                human_bytes(self.max_request_bytes as u64)
            )));
        }
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| Failure::Other("the evaluator is shutting down".to_owned()))?;
        // One that died idle (killed from outside) is replaced, not blamed on this request.
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .and_then(|mut worker| worker.alive().then_some(worker));
        let mut worker = match idle {
            Some(worker) => worker,
            None => self.start().await.map_err(Failure::Other)?,
        };
        match timeout(self.max_time, worker.exchange(request)).await {
            Ok(Ok(answer)) => {
                self.idle
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(worker);
                Ok(answer)
            }
            Ok(Err(error)) => Err(worker.diagnose(&error).await),
            Err(_) => {
                debug!(pid = worker.pid, "stopping a worker past its time budget");
                worker.stop();
                Err(Failure::Time)
            }
        }
    }

    /// Starts a worker and waits until it is ready.
    async fn start(&self) -> Result<Worker, String> {
        let mut child = Command::new(&self.program)
            .arg(WORKER_ARG)
            .arg(&self.budget_arg)
            .arg(std::process::id().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A worker's backtrace helps no one and would bury why it stopped.
            .env("RUST_BACKTRACE", "0")
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                format!(
                    "the evaluation worker {} could not be started: {e}",
                    self.program.display()
                )
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("the evaluation worker has no standard input or output".to_owned());
        };
        let stderr = child.stderr.take().map(|stderr| tokio::spawn(tail(stderr)));
        let mut worker = Worker {
            pid: child.id(),
            child,
            stdin,
            stdout: BufReader::new(stdout),
            stderr,
        };
        match timeout(STARTUP_TIMEOUT, read_line(&mut worker.stdout, 256)).await {
            Ok(Ok(line)) if line == READY => {
                debug!(pid = worker.pid, "evaluation worker started");
                Ok(worker)
            }
            Ok(Ok(line)) => Err(format!(
                "the evaluation worker {} did not start: it wrote {:?}",
                self.program.display(),
                String::from_utf8_lossy(&line)
            )),
            Ok(Err(error)) => match worker.diagnose(&error).await {
                Failure::Other(message) => Err(message),
                other => Err(format!("the evaluation worker did not start: {other:?}")),
            },
            Err(_) => Err(format!(
                "the evaluation worker {} was not ready within {STARTUP_TIMEOUT:?}",
                self.program.display()
            )),
        }
    }
}

/// A running worker process.
#[derive(Debug)]
struct Worker {
    /// Its process id, for logs.
    pid: Option<u32>,
    /// The process, killed when dropped.
    child: Child,
    /// Where requests go.
    stdin: ChildStdin,
    /// Where answers come from.
    stdout: BufReader<ChildStdout>,
    /// What it wrote on standard error, once it closes it.
    stderr: Option<JoinHandle<LastWords>>,
}

impl Worker {
    /// Whether the process still runs (one that exited is reaped).
    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends one request and reads the answer.
    async fn exchange(&mut self, request: &[u8]) -> io::Result<Answer> {
        self.stdin.write_all(request).await?;
        self.stdin.flush().await?;
        let line = read_line(&mut self.stdout, MAX_RESPONSE_BYTES).await?;
        serde_json::from_slice(&line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Kills the worker; the runtime reaps it.
    fn stop(mut self) {
        if let Err(e) = self.child.start_kill() {
            debug!(pid = self.pid, error = %e, "the worker had already exited");
        }
    }

    /// Why a worker stopped answering (`error`: what reading or writing gave): its memory
    /// budget when its allocator said so, otherwise its exit status and last words.
    async fn diagnose(mut self, error: &io::Error) -> Failure {
        let status = match timeout(EXIT_WAIT, self.child.wait()).await {
            Ok(Ok(status)) => status.to_string(),
            Ok(Err(e)) => format!("its status is unknown: {e}"),
            Err(_) => {
                let _ = self.child.start_kill();
                "it was killed: it stopped answering but did not exit".to_owned()
            }
        };
        let last_words = match self.stderr.take() {
            Some(stderr) => timeout(EXIT_WAIT, stderr)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default(),
            None => LastWords::default(),
        };
        if last_words.allocation_failed {
            return Failure::Memory;
        }
        let last_words = last_lines(&last_words.tail);
        error!(pid = self.pid, status, error = %error, stderr = %last_words, "an evaluation worker stopped");
        Failure::Other(if last_words.is_empty() {
            format!("the evaluation worker stopped ({status}): {error}")
        } else {
            format!("the evaluation worker stopped ({status}): {error}: {last_words}")
        })
    }
}

/// Reads one line of at most `limit` bytes (without its end); a longer line or none at all is
/// an error.
async fn read_line<R: AsyncBufRead + Unpin>(reader: &mut R, limit: usize) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    let limit = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader.take(limit).read_until(b'\n', &mut line).await?;
    match line.pop() {
        Some(b'\n') => Ok(line),
        Some(_) if line.len() as u64 + 1 >= limit => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the worker's answer is too long",
        )),
        _ => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the worker closed its output",
        )),
    }
}

/// What a worker wrote on standard error, read until it closes it.
#[derive(Debug, Default)]
struct LastWords {
    /// The last [`STDERR_TAIL_BYTES`] of it.
    tail: String,
    /// Whether its allocator said an allocation failed (anywhere in it).
    allocation_failed: bool,
}

/// Reads a worker's standard error until it closes it.
async fn tail(mut stderr: ChildStderr) -> LastWords {
    let mut kept: Vec<u8> = Vec::new();
    let mut allocation_failed = false;
    let mut chunk = [0u8; 1024];
    while let Ok(n @ 1..) = stderr.read(&mut chunk).await {
        kept.extend_from_slice(&chunk[..n]);
        allocation_failed = allocation_failed
            || kept
                .windows(ALLOCATION_FAILED.len())
                .any(|w| w == ALLOCATION_FAILED.as_bytes());
        if kept.len() > STDERR_TAIL_BYTES {
            kept.drain(..kept.len() - STDERR_TAIL_BYTES);
        }
    }
    LastWords {
        tail: String::from_utf8_lossy(&kept).into_owned(),
        allocation_failed,
    }
}

/// The last lines of a worker's standard error, short enough for a measurement's message.
fn last_lines(tail: &str) -> String {
    const LINES: usize = 3;
    let lines: Vec<&str> = tail
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut text = lines[lines.len().saturating_sub(LINES)..].join("; ");
    if text.len() > 512 {
        let mut start = text.len() - 512;
        while !text.is_char_boundary(start) {
            start += 1;
        }
        text = format!("…{}", &text[start..]);
    }
    text
}

/// The entry point of an evaluation worker process (`sluice __condition-worker BUDGET
/// [CONTROLLER_PID]`): limits its memory, then answers requests on standard input until it
/// closes, or until the controller is no longer its parent.
pub fn worker_main() -> ExitCode {
    match serve() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("condition worker: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The worker's life: limits, readiness, then one answer per request line.
fn serve() -> anyhow::Result<()> {
    let budget_arg = std::env::args()
        .nth(2)
        .context("the budget argument is missing")?;
    let budget: ConditionBudget =
        serde_json::from_str(&budget_arg).context("the budget argument is not a budget")?;
    // The controller, whose end the worker must not outlive; by default its parent now.
    let controller = match std::env::args().nth(3) {
        Some(pid) => pid
            .parse()
            .context("the controller's pid is not a number")?,
        None => std::os::unix::process::parent_id(),
    };
    let started = Instant::now();
    let busy_since = Arc::new(AtomicU64::new(0));
    watch(&budget, controller, started, Arc::clone(&busy_since))?;
    // Requests are answered on a thread with the stack an evaluation needs, started (like the
    // watchdog) before the memory limit so that its stack counts in the baseline.
    let (go, ready) = std::sync::mpsc::channel::<()>();
    let answering = {
        let budget = budget.clone();
        std::thread::Builder::new()
            .name("condition".to_owned())
            .stack_size(EVALUATION_STACK_BYTES)
            .spawn(move || {
                ready
                    .recv()
                    .context("the worker stopped before its limits were set")?;
                answer_requests(&budget, started, &busy_since)
            })
            .context("starting the evaluation thread")?
    };
    limit_memory(budget.max_memory_bytes)?;
    go.send(())
        .context("the evaluation thread stopped before it began")?;
    answering
        .join()
        .map_err(|_| anyhow::anyhow!("the evaluation thread panicked"))?
}

/// Writes the ready line, then answers each request line until standard input closes.
fn answer_requests(
    budget: &ConditionBudget,
    started: Instant,
    busy_since: &AtomicU64,
) -> anyhow::Result<()> {
    let mut input = io::stdin().lock();
    let mut output = io::stdout().lock();
    output.write_all(READY)?;
    output.write_all(b"\n")?;
    output.flush()?;
    let max_request = max_request_bytes(budget);
    let limit = u64::try_from(max_request)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    loop {
        let mut line = Vec::new();
        input.by_ref().take(limit).read_until(b'\n', &mut line)?;
        match line.last() {
            Some(b'\n') => {}
            // The controller closed its end: done.
            _ if (line.len() as u64) < limit => return Ok(()),
            _ => anyhow::bail!("a request is longer than {max_request} bytes"),
        }
        busy_since.store(millis_since(started).saturating_add(1), Ordering::SeqCst);
        let answer = answer(&line, budget);
        busy_since.store(0, Ordering::SeqCst);
        serde_json::to_writer(&mut output, &answer)?;
        output.write_all(b"\n")?;
        output.flush()?;
    }
}

/// Evaluates one request line.
fn answer(line: &[u8], budget: &ConditionBudget) -> Answer {
    // The controller wrote this value; its depth is its JSON's, times two for the tags.
    let mut reader = serde_json::Deserializer::from_slice(line);
    reader.disable_recursion_limit();
    let request = match Request::deserialize(&mut reader) {
        Ok(request) => request,
        Err(e) => {
            return Answer::Failed {
                message: format!("the evaluation request could not be read: {e}"),
            };
        }
    };
    let outcome =
        compile_within(&request.condition, budget).and_then(|c| c.evaluate(&request.result));
    match outcome {
        Ok(holds) => Answer::Holds { holds },
        Err(ConditionError::NotBoolean { value, .. }) => Answer::NotBoolean { value: cut(value) },
        Err(ConditionError::Evaluate { message, .. }) => Answer::Failed {
            message: cut(message),
        },
        Err(other) => Answer::Failed {
            message: cut(other.to_string()),
        },
    }
}

/// A text cut to [`MAX_ANSWER_TEXT_BYTES`], marked as cut.
fn cut(text: String) -> String {
    if text.len() <= MAX_ANSWER_TEXT_BYTES {
        return text;
    }
    sluice_api::model::cut(&text, MAX_ANSWER_TEXT_BYTES)
}

/// Milliseconds since `start`.
fn millis_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Starts the watchdog: it ends the worker when the controller is gone (the worker is then an
/// orphan) or when one evaluation runs far past its budget (the controller should have killed
/// it already).
fn watch(
    budget: &ConditionBudget,
    controller: u32,
    started: Instant,
    busy_since: Arc<AtomicU64>,
) -> io::Result<()> {
    let limit = budget
        .max_time
        .saturating_mul(2)
        .saturating_add(Duration::from_secs(1));
    let limit_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
    std::thread::Builder::new()
        .name("condition-watchdog".to_owned())
        .stack_size(64 * 1024)
        .spawn(move || {
            loop {
                if std::os::unix::process::parent_id() != controller {
                    std::process::exit(2);
                }
                let since = busy_since.load(Ordering::SeqCst);
                if since != 0
                    && millis_since(started)
                        .saturating_add(1)
                        .saturating_sub(since)
                        > limit_ms
                {
                    eprintln!("condition worker: an evaluation ran past {limit:?}; stopping");
                    std::process::exit(3);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
        .map(|_| ())
}

/// Limits the worker's memory to what it holds now plus `budget` bytes (`RLIMIT_DATA`: heap
/// and private writable mappings), and turns off core dumps of a worker that runs out.
fn limit_memory(budget: u64) -> anyhow::Result<()> {
    rlimit::Resource::CORE
        .set(0, 0)
        .context("turning off core dumps")?;
    let baseline = data_bytes().context("reading the worker's memory use")?;
    let (_, hard) = rlimit::Resource::DATA
        .get()
        .context("reading the data limit")?;
    let limit = baseline.saturating_add(budget).min(hard);
    rlimit::Resource::DATA
        .set(limit, limit)
        .with_context(|| format!("limiting memory to {}", human_bytes(limit)))
}

/// The process's data memory (`VmData`), what `RLIMIT_DATA` bounds.
fn data_bytes() -> anyhow::Result<u64> {
    let mut status = String::new();
    std::fs::File::open("/proc/self/status")
        .context("opening /proc/self/status")?
        .read_to_string(&mut status)?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmData:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .context("no VmData in /proc/self/status")?
        .trim()
        .parse()
        .context("VmData is not a number")?;
    Ok(kib.saturating_mul(1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(success: &str) -> Metric {
        serde_json::from_value(serde_json::json!({
            "name": "m",
            "successCondition": success,
            "provider": {"web": {"url": "http://x"}},
        }))
        .expect("a metric")
    }

    #[tokio::test]
    async fn unit_tests_evaluate_in_process_with_the_static_caps() {
        let evaluator = Evaluator::new(ConditionBudget::default());
        assert!(!evaluator.isolated(), "the test binary is not sluice");
        let phase = evaluator
            .assess(&metric("isNaN(result[0])"), &vec![f64::NAN].into())
            .await;
        assert_eq!(phase, Ok(AnalysisPhase::Successful));
        let refused = evaluator
            .assess(&metric("len(0..200000000) > 0"), &1.0.into())
            .await;
        assert!(
            matches!(refused, Err(ConditionError::RangeTooLarge { .. })),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn in_process_evaluation_reports_the_time_budget() {
        let budget = ConditionBudget {
            max_time: Duration::from_millis(1),
            ..ConditionBudget::default()
        };
        let evaluator = Evaluator::in_process(budget);
        let slow = "all(0..result, {all(0..result, {# >= 0})})";
        let error = evaluator
            .assess(&metric(slow), &MetricValue::Int(3000))
            .await
            .expect_err("far past 1ms");
        assert_eq!(
            error.to_string(),
            format!("condition {slow:?} exceeded its time budget of 1ms")
        );
    }

    #[test]
    fn values_cross_to_the_worker_unchanged() {
        let value = MetricValue::Array(vec![
            MetricValue::Float(f64::NAN),
            MetricValue::Float(f64::NEG_INFINITY),
            MetricValue::Float(0.5),
            MetricValue::Int(-3),
            MetricValue::String("x\n\"".to_owned()),
            MetricValue::Map([("k".to_owned(), MetricValue::Nil)].into()),
            MetricValue::Bool(true),
        ]);
        let line = request("isNaN(result[0])", &serde_json::to_vec(&value).unwrap());
        let answer = answer(&line[..line.len() - 1], &ConditionBudget::default());
        assert!(
            matches!(answer, Answer::Holds { holds: true }),
            "{answer:?}"
        );
        let read: Request = serde_json::from_slice(&line).unwrap();
        assert_eq!(read.condition, "isNaN(result[0])");
        assert_eq!(condition::display(&read.result), condition::display(&value));
    }

    #[test]
    fn long_answers_are_cut() {
        let long = "é".repeat(MAX_ANSWER_TEXT_BYTES);
        let cut = cut(long);
        assert!(cut.len() <= MAX_ANSWER_TEXT_BYTES + '…'.len_utf8());
        assert!(cut.ends_with('…'));
    }
}
