//! The one place Rhai engines are built and limited. Each thread gets its own engine (an engine
//! shared between threads was measured at about half the throughput), rebuilt when the limits or
//! the scripts directory change. Nothing else may create or loosen an engine.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rhai::{Dynamic, Engine, EvalAltResult, ImmutableString, Module, Position};
use serde_json::Value;

use crate::convert::{to_dynamic, to_json};
use crate::host::{self, Capability};

/// The limits every script runs under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ScriptLimits {
    /// Operations per call.
    pub max_operations: u64,
    /// Function call depth.
    pub max_call_levels: usize,
    /// Longest string, in bytes.
    pub max_string_size: usize,
    /// Largest array.
    pub max_array_size: usize,
    /// Largest map.
    pub max_map_size: usize,
    /// Wall-clock budget of one call.
    pub max_duration: Duration,
    /// The directory scripts may import from.
    pub scripts_dir: PathBuf,
}

impl ScriptLimits {
    /// Defaults for scripts under `scripts_dir`.
    pub fn new(scripts_dir: impl Into<PathBuf>) -> Self {
        Self {
            max_operations: 1_000_000,
            max_call_levels: 48,
            max_string_size: 1 << 20,
            max_array_size: 100_000,
            max_map_size: 10_000,
            max_duration: Duration::from_secs(2),
            scripts_dir: scripts_dir.into(),
        }
    }
}

/// Expression nesting allowed (global, in functions).
const MAX_EXPR_DEPTHS: (usize, usize) = (64, 32);
/// Modules a script may import.
const MAX_MODULES: usize = 32;
/// Compiled regular expressions kept per thread.
const REGEX_CACHE: usize = 256;

/// Log lines one script call (with the calls nested in it) may write.
const MAX_LOG_LINES: u32 = 200;
/// Log bytes one script call (with the calls nested in it) may write.
const MAX_LOG_BYTES: usize = 64 * 1024;

/// What is left of a script call's log budget.
#[derive(Debug, Clone, Copy)]
struct LogBudget {
    lines: u32,
    bytes: usize,
    exhausted: bool,
}

thread_local! {
    static ENGINE: RefCell<Option<(ScriptLimits, Rc<Engine>)>> = const { RefCell::new(None) };
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
    static LOG_BUDGET: Cell<Option<LogBudget>> = const { Cell::new(None) };
    static REGEXES: RefCell<HashMap<String, Rc<regex::Regex>>> = RefCell::new(HashMap::new());
}

/// Runs `work` with this thread's engine for `limits`.
pub fn with_engine<R>(limits: &ScriptLimits, work: impl FnOnce(&Engine) -> R) -> R {
    let engine = ENGINE.with(|slot| {
        let mut slot = slot.borrow_mut();
        match &*slot {
            Some((built_for, engine)) if built_for == limits => Rc::clone(engine),
            _ => {
                let engine = Rc::new(build_engine(limits));
                *slot = Some((limits.clone(), Rc::clone(&engine)));
                engine
            }
        }
    });
    work(&engine)
}

/// Runs a script call under the wall-clock budget and the log budget. A nested call (a script
/// run by a host call of another) shares the log budget of the call it runs in and never ends
/// later than that call's deadline, so one request's scripts together keep the wall clock.
pub(crate) fn with_deadline<R>(limits: &ScriptLimits, work: impl FnOnce() -> R) -> R {
    let own = Instant::now() + limits.max_duration;
    let previous = DEADLINE.with(|deadline| {
        let previous = deadline.get();
        deadline.set(Some(previous.map_or(own, |outer| outer.min(own))));
        previous
    });
    let outermost = LOG_BUDGET.with(|budget| {
        let fresh = budget.get().is_none();
        if fresh {
            budget.set(Some(LogBudget {
                lines: MAX_LOG_LINES,
                bytes: MAX_LOG_BYTES,
                exhausted: false,
            }));
        }
        fresh
    });
    let result = work();
    DEADLINE.with(|deadline| deadline.set(previous));
    if outermost {
        LOG_BUDGET.with(|budget| budget.set(None));
    }
    result
}

/// The level of a script's log line.
#[derive(Debug, Clone, Copy)]
enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

/// Writes one log line for the running script, within the call's log budget: past
/// [`MAX_LOG_LINES`] lines or [`MAX_LOG_BYTES`] bytes, one warning says so and the rest is
/// dropped, so a logging loop cannot flood the log.
fn script_log(level: LogLevel, text: &str) {
    let allowed = LOG_BUDGET.with(|slot| {
        let Some(mut budget) = slot.get() else {
            return true;
        };
        let fits = budget.lines > 0 && budget.bytes >= text.len();
        if fits {
            budget.lines -= 1;
            budget.bytes -= text.len();
        } else if !budget.exhausted {
            budget.exhausted = true;
            tracing::warn!(
                script.name = %host::current_script(),
                "script log budget of {MAX_LOG_LINES} lines or {MAX_LOG_BYTES} bytes per call exhausted; dropping the rest"
            );
        }
        slot.set(Some(budget));
        fits
    });
    if !allowed {
        return;
    }
    let script = host::current_script();
    match level {
        LogLevel::Debug => tracing::debug!(script.name = %script, "{text}"),
        LogLevel::Info => tracing::info!(script.name = %script, "{text}"),
        LogLevel::Warn => tracing::warn!(script.name = %script, "{text}"),
        LogLevel::Error => tracing::error!(script.name = %script, "{text}"),
    }
}

fn past_deadline() -> bool {
    DEADLINE.with(|deadline| deadline.get().is_some_and(|at| Instant::now() > at))
}

/// Builds an engine with every limit and the host API. The only engine constructor.
pub fn build_engine(limits: &ScriptLimits) -> Engine {
    let mut engine = Engine::new();
    engine.disable_symbol("eval");
    engine.set_strict_variables(true);
    engine.set_max_operations(limits.max_operations);
    engine.set_max_call_levels(limits.max_call_levels);
    engine.set_max_expr_depths(MAX_EXPR_DEPTHS.0, MAX_EXPR_DEPTHS.1);
    engine.set_max_string_size(limits.max_string_size);
    engine.set_max_array_size(limits.max_array_size);
    engine.set_max_map_size(limits.max_map_size);
    engine.set_max_modules(MAX_MODULES);
    engine.set_module_resolver(crate::script::ScriptsDirResolver::new(&limits.scripts_dir));
    engine.on_progress(|operations| {
        (operations % 256 == 0 && past_deadline()).then(|| Dynamic::from("time budget exceeded"))
    });
    engine.on_print(|text| script_log(LogLevel::Info, text));
    engine.on_debug(|text, _, position| script_log(LogLevel::Debug, &format!("{position}: {text}")));
    engine.register_static_module("openidm", openidm_module().into());
    engine.register_static_module("logger", logger_module().into());
    engine.register_static_module("context", context_module().into());
    engine.register_static_module("text", text_module().into());
    engine.register_static_module("time", time_module().into());
    engine.register_fn("addPolicy", crate::policy::register_policy);
    crate::access::register(&mut engine);
    engine
}

/// A function the host API adds to every engine, as scripts call it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostFunction {
    /// The static module it is called through (`openidm`, `logger`, …); `None` for a global
    /// function (`addPolicy`, the access-rule checks).
    pub namespace: Option<String>,
    /// The function's name within its namespace.
    pub name: String,
    /// How many arguments it takes (overloads with different arities are listed separately).
    pub arity: usize,
}

impl HostFunction {
    /// The name a script writes: `openidm::read`, or `addPolicy` for a global function.
    pub fn path(&self) -> String {
        match &self.namespace {
            Some(namespace) => format!("{namespace}::{}", self.name),
            None => self.name.clone(),
        }
    }
}

impl std::fmt::Display for HostFunction {
    /// `path/arity`, e.g. `text::matches/3`.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}/{}", self.path(), self.arity)
    }
}

/// Every function the host API offers scripts, read back from an engine made by
/// [`build_engine`]: the functions of each registered static module and those registered in
/// the global namespace, without Rhai's standard library. Sorted by namespace (globals first),
/// name and arity, so a function registered in [`build_engine`] is listed without further work.
pub fn host_functions() -> Vec<HostFunction> {
    let engine = build_engine(&ScriptLimits::new(PathBuf::new()));
    let mut functions = engine.collect_fn_metadata(
        None,
        |info| {
            (info.metadata.access == rhai::FnAccess::Public).then(|| HostFunction {
                namespace: (!info.namespace.is_empty()).then(|| info.namespace.to_string()),
                name: info.metadata.name.to_string(),
                arity: info.metadata.num_params,
            })
        },
        false,
    );
    functions.sort();
    functions.dedup();
    functions
}

type HostResult = Result<Dynamic, Box<EvalAltResult>>;

fn fail(message: impl Into<String>) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(
        Dynamic::from(message.into()),
        Position::NONE,
    ))
}

fn thrown(error: host::HostError) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(
        to_dynamic(&error.to_json()),
        Position::NONE,
    ))
}

fn host_for(function: &str, needs_write: bool) -> Result<Rc<dyn host::Host>, Box<EvalAltResult>> {
    match host::current() {
        None => Err(fail(format!("{function} is not available here"))),
        Some((_, Capability::Read)) if needs_write => {
            Err(fail(format!("{function} is not available to this script (read-only)")))
        }
        Some((host, _)) => Ok(host),
    }
}

fn openidm_module() -> Module {
    let mut module = Module::new();
    module.set_native_fn("read", |path: ImmutableString| -> HostResult {
        let host = host_for("openidm::read", false)?;
        match host.read(&path).map_err(thrown)? {
            Some(value) => Ok(to_dynamic(&value)),
            None => Ok(Dynamic::UNIT),
        }
    });
    module.set_native_fn(
        "query",
        |path: ImmutableString, filter: ImmutableString| -> HostResult {
            let host = host_for("openidm::query", false)?;
            let results = host.query(&path, &filter).map_err(thrown)?;
            Ok(to_dynamic(&Value::Array(results)))
        },
    );
    module.set_native_fn("create", |path: ImmutableString, content: Dynamic| -> HostResult {
        let host = host_for("openidm::create", true)?;
        Ok(to_dynamic(&host.create(&path, to_json(&content)).map_err(thrown)?))
    });
    module.set_native_fn("update", |path: ImmutableString, content: Dynamic| -> HostResult {
        let host = host_for("openidm::update", true)?;
        Ok(to_dynamic(&host.update(&path, to_json(&content)).map_err(thrown)?))
    });
    module.set_native_fn("patch", |path: ImmutableString, operations: Dynamic| -> HostResult {
        let host = host_for("openidm::patch", true)?;
        Ok(to_dynamic(&host.patch(&path, to_json(&operations)).map_err(thrown)?))
    });
    module.set_native_fn("delete", |path: ImmutableString| -> HostResult {
        let host = host_for("openidm::delete", true)?;
        Ok(to_dynamic(&host.delete(&path).map_err(thrown)?))
    });
    module.set_native_fn("service", |name: ImmutableString, arguments: Dynamic| -> HostResult {
        let host = host_for("openidm::service", true)?;
        Ok(to_dynamic(&host.service(&name, to_json(&arguments)).map_err(thrown)?))
    });
    module
}

fn logger_module() -> Module {
    let mut module = Module::new();
    module.set_native_fn("info", |message: ImmutableString| {
        script_log(LogLevel::Info, &message);
        Ok(())
    });
    module.set_native_fn("warn", |message: ImmutableString| {
        script_log(LogLevel::Warn, &message);
        Ok(())
    });
    module.set_native_fn("error", |message: ImmutableString| {
        script_log(LogLevel::Error, &message);
        Ok(())
    });
    module
}

fn context_module() -> Module {
    let mut module = Module::new();
    module.set_native_fn("resource", || -> HostResult {
        Ok(host::current()
            .and_then(|(host, _)| host.resource())
            .map_or(Dynamic::UNIT, Dynamic::from))
    });
    module.set_native_fn("requiredFailed", || Ok(crate::policy::required_failed()));
    module.set_native_fn("valuePresent", || Ok(crate::policy::value_present()));
    module.set_native_fn(
        "checkPolicy",
        |policy_id: ImmutableString,
         full_object: Dynamic,
         value: Dynamic,
         params: Dynamic,
         property: ImmutableString| {
            crate::policy::check_policy(&policy_id, full_object, value, params, &property)
        },
    );
    module
}

fn cached_regex(pattern: &str) -> Result<Rc<regex::Regex>, Box<EvalAltResult>> {
    REGEXES.with(|cache| {
        if let Some(regex) = cache.borrow().get(pattern) {
            return Ok(Rc::clone(regex));
        }
        let compiled = regex::RegexBuilder::new(pattern)
            .size_limit(1 << 20)
            .build()
            .map_err(|error| fail(format!("invalid regular expression: {error}")))?;
        let compiled = Rc::new(compiled);
        let mut cache = cache.borrow_mut();
        if cache.len() >= REGEX_CACHE {
            cache.clear();
        }
        cache.insert(pattern.to_owned(), Rc::clone(&compiled));
        Ok(compiled)
    })
}

fn with_flags(pattern: &str, flags: &str) -> String {
    let inline: String = flags.chars().filter(|flag| matches!(flag, 'i' | 'm' | 's')).collect();
    if inline.is_empty() {
        pattern.to_owned()
    } else {
        format!("(?{inline}){pattern}")
    }
}

fn text_module() -> Module {
    let mut module = Module::new();
    module.set_native_fn("matches", |text: ImmutableString, pattern: ImmutableString| {
        Ok(cached_regex(&pattern)?.is_match(&text))
    });
    module.set_native_fn(
        "matches",
        |text: ImmutableString, pattern: ImmutableString, flags: ImmutableString| {
            Ok(cached_regex(&with_flags(&pattern, &flags))?.is_match(&text))
        },
    );
    module.set_native_fn("count", |text: ImmutableString, pattern: ImmutableString| {
        Ok(rhai::INT::try_from(cached_regex(&pattern)?.find_iter(&text).count()).unwrap_or(rhai::INT::MAX))
    });
    module.set_native_fn("isDate", |text: ImmutableString| Ok(is_date(&text)));
    module
}

fn time_module() -> Module {
    let mut module = Module::new();
    module.set_native_fn("minutesSince", |text: ImmutableString| -> HostResult {
        Ok(
            chrono::DateTime::parse_from_rfc3339(text.trim()).map_or(Dynamic::UNIT, |then| {
                let elapsed = chrono::Utc::now().signed_duration_since(then);
                #[expect(clippy::cast_precision_loss, reason = "minutes as a float for comparisons")]
                let minutes = elapsed.num_milliseconds() as f64 / 60_000.0;
                Dynamic::from_float(minutes)
            }),
        )
    });
    module.set_native_fn("now", || Ok(ferridm_core::time::now_iso()));
    module
}

/// True for the date forms IDM accepts: ISO-8601 dates and date-times (with or without zone).
fn is_date(text: &str) -> bool {
    let text = text.trim();
    chrono::DateTime::parse_from_rfc3339(text).is_ok()
        || chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").is_ok()
        || chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok()
        || chrono::DateTime::parse_from_rfc2822(text).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Log output captured from a subscriber (a `MakeWriter` for tests).
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_logging_loop_is_cut_at_the_log_budget() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let limits = ScriptLimits::new(std::env::temp_dir());
        tracing::subscriber::with_default(subscriber, || {
            let script = crate::CompiledScript::compile_text(
                &limits,
                "scripts/loud.rhai",
                "for i in 0..1000 { print(`line ${i}`); logger::warn(`warn ${i}`); } 42",
            )
            .unwrap();
            for _ in 0..2 {
                assert_eq!(script.run(&limits, Vec::new()).unwrap().as_int().unwrap(), 42);
            }
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let script_lines = text
            .lines()
            .filter(|line| line.contains("line ") || line.contains("warn "))
            .count();
        let budget = usize::try_from(MAX_LOG_LINES).unwrap();
        assert_eq!(script_lines, 2 * budget, "each call writes its budget and no more");
        assert_eq!(text.matches("log budget").count(), 2, "one warning per call");
        let huge = crate::CompiledScript::compile_text(
            &limits,
            "scripts/huge.rhai",
            "let s = \"x\"; s.pad(70000, 'x'); print(s); 1",
        )
        .unwrap();
        let captured_huge = Captured::default();
        let writer = captured_huge.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let ran = tracing::subscriber::with_default(subscriber, || huge.run(&limits, Vec::new()).unwrap());
        assert_eq!(ran.as_int().unwrap(), 1);
        let text = String::from_utf8(captured_huge.0.lock().unwrap().clone()).unwrap();
        assert!(
            text.len() < MAX_LOG_BYTES,
            "a line over the byte budget is dropped: {} bytes",
            text.len()
        );
        assert!(text.contains("log budget"));
    }

    fn limits() -> ScriptLimits {
        ScriptLimits {
            max_operations: 10_000,
            max_duration: Duration::from_millis(200),
            ..ScriptLimits::new(std::env::temp_dir())
        }
    }

    #[test]
    fn eval_is_disabled() {
        with_engine(&limits(), |engine| {
            assert!(engine.compile(r#"eval("1")"#).is_err());
        });
    }

    #[test]
    fn endless_loops_hit_the_operation_budget() {
        with_engine(&limits(), |engine| {
            let error = engine.eval::<()>("loop { }").unwrap_err();
            assert!(matches!(*error, EvalAltResult::ErrorTooManyOperations(_)));
        });
    }

    #[test]
    fn deep_recursion_hits_the_call_depth() {
        with_engine(&limits(), |engine| {
            let error = engine.eval::<i64>("fn f(n) { f(n + 1) } f(0)").unwrap_err();
            assert!(matches!(*error, EvalAltResult::ErrorStackOverflow(_)), "{error}");
        });
    }

    #[test]
    fn huge_strings_hit_the_size_limit() {
        let limits = ScriptLimits {
            max_string_size: 1000,
            ..limits()
        };
        with_engine(&limits, |engine| {
            let error = engine
                .eval::<String>(r#"let s = "x"; for i in 0..20 { s += s; } s"#)
                .unwrap_err();
            assert!(matches!(*error, EvalAltResult::ErrorDataTooLarge(..)), "{error}");
        });
    }

    #[test]
    fn slow_scripts_hit_the_time_budget() {
        let limits = ScriptLimits {
            max_operations: 0,
            max_duration: Duration::from_millis(50),
            ..limits()
        };
        let started = Instant::now();
        let result = with_engine(&limits, |engine| {
            with_deadline(&limits, || engine.eval::<()>("loop { }"))
        });
        assert!(matches!(*result.unwrap_err(), EvalAltResult::ErrorTerminated(..)));
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn a_nested_call_ends_by_the_deadline_of_the_call_around_it() {
        let outer = ScriptLimits {
            max_operations: 0,
            max_duration: Duration::from_millis(100),
            ..limits()
        };
        let inner = ScriptLimits {
            max_duration: Duration::from_secs(30),
            ..outer.clone()
        };
        let started = Instant::now();
        let result = with_deadline(&outer, || {
            with_engine(&inner, |engine| with_deadline(&inner, || engine.eval::<()>("loop { }")))
        });
        assert!(matches!(*result.unwrap_err(), EvalAltResult::ErrorTerminated(..)));
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        assert!(
            DEADLINE.with(Cell::get).is_none(),
            "the deadline is gone after the call"
        );
    }

    #[test]
    fn imported_modules_load_under_the_time_budget() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("spin.rhai"), "loop { }").unwrap();
        let limits = ScriptLimits {
            max_operations: 0,
            max_duration: Duration::from_millis(100),
            ..ScriptLimits::new(dir.path())
        };
        let started = Instant::now();
        let error =
            crate::CompiledScript::compile_text(&limits, "scripts/x.rhai", "import \"spin\" as s; 1").unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        assert!(error.message.contains("time budget"), "{error}");
    }

    #[test]
    fn host_functions_fail_cleanly_without_a_host() {
        with_engine(&limits(), |engine| {
            let error = engine
                .eval::<Dynamic>(r#"openidm::read("managed/user/x")"#)
                .unwrap_err();
            assert!(error.to_string().contains("not available"), "{error}");
        });
    }

    #[test]
    fn the_host_api_lists_every_registered_function() {
        let functions = host_functions();
        let listed: Vec<String> = functions.iter().map(ToString::to_string).collect();
        for expected in [
            "addPolicy/1",
            "ownDataOnly/0",
            "openidm::read/1",
            "openidm::service/2",
            "logger::warn/1",
            "context::checkPolicy/5",
            "text::matches/2",
            "text::matches/3",
            "time::now/0",
        ] {
            assert!(
                listed.iter().any(|known| known == expected),
                "{expected} missing from {listed:?}"
            );
        }
        assert!(
            !listed
                .iter()
                .any(|known| known.starts_with("print/") || known.starts_with("len/")),
            "{listed:?}"
        );
        assert_eq!(
            functions.iter().filter(|function| function.namespace.is_none()).count(),
            1 + crate::access::VOCABULARY.len(),
            "{listed:?}"
        );
        assert!(functions.windows(2).all(|pair| pair[0] < pair[1]), "{listed:?}");
        assert!(
            functions
                .iter()
                .skip_while(|function| function.namespace.is_none())
                .all(|function| function.namespace.is_some()),
            "globals come first: {listed:?}"
        );
    }

    #[test]
    fn text_helpers_match_and_count() {
        with_engine(&limits(), |engine| {
            assert!(engine.eval::<bool>(r#"text::matches("abc", "^a")"#).unwrap());
            assert!(engine.eval::<bool>(r#"text::matches("ABC", "^a", "i")"#).unwrap());
            assert_eq!(engine.eval::<i64>(r#"text::count("a1b2c3", "[0-9]")"#).unwrap(), 3);
            assert!(engine.eval::<bool>(r#"text::isDate("2017-01-01")"#).unwrap());
            assert!(!engine.eval::<bool>(r#"text::isDate("not a date")"#).unwrap());
        });
    }
}
