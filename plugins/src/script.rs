//! Compiled scripts. A script is compiled once per reload (imports resolved at compile time,
//! only from the scripts directory), remembers its functions, and is called with a fresh scope
//! under the engine limits. Errors carry the script's path, line and column.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rhai::module_resolvers::ModuleResolver;
use rhai::{AST, CallFnOptions, Dynamic, Engine, EvalAltResult, Module, Position, Scope};
use sha2::{Digest, Sha256};

use crate::engine::{ScriptLimits, with_deadline, with_engine};
use crate::error::{ScriptError, ScriptErrorKind};
use crate::host::{self, ScriptOutcome};

/// Where a script's text comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptSource {
    /// A file: where to read it, and the name messages use (e.g. relative to the project).
    File {
        /// The path to read.
        path: PathBuf,
        /// The name shown in errors and logs.
        name: String,
    },
    /// Text written inline in a config file; `name` says where (for messages).
    Inline {
        /// Where the text came from, e.g. `conf/selfservice-profile.json`.
        name: String,
        /// The script text.
        source: String,
    },
}

impl ScriptSource {
    /// The name errors and logs use.
    pub fn name(&self) -> String {
        match self {
            Self::File { name, .. } | Self::Inline { name, .. } => name.clone(),
        }
    }

    /// A file named by its path.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let name = path.display().to_string();
        Self::File { path, name }
    }
}

/// A compiled script, shareable between threads.
#[derive(Debug, Clone)]
pub struct CompiledScript {
    name: String,
    ast: Arc<AST>,
    functions: Vec<(String, usize)>,
    digest: [u8; 32],
}

impl CompiledScript {
    /// Reads (for files) and compiles a script.
    pub fn compile(limits: &ScriptLimits, source: &ScriptSource) -> Result<Self, ScriptError> {
        Self::compile_with(limits, source, &[])
    }

    /// Reads and compiles a script whose top level runs with `variables` in scope (a trigger's
    /// `object`, a transform's `content`, a condition's `user`).
    pub fn compile_with(limits: &ScriptLimits, source: &ScriptSource, variables: &[&str]) -> Result<Self, ScriptError> {
        let name = source.name();
        let text = match source {
            ScriptSource::File { path, .. } => std::fs::read_to_string(path)
                .map_err(|error| ScriptError::new(&name, ScriptErrorKind::Compile, format!("cannot read: {error}")))?,
            ScriptSource::Inline { source, .. } => source.clone(),
        };
        Self::compile_text_with(limits, &name, &text, variables)
    }

    /// Compiles script text under a name.
    pub fn compile_text(limits: &ScriptLimits, name: &str, text: &str) -> Result<Self, ScriptError> {
        Self::compile_text_with(limits, name, text, &[])
    }

    /// Compiles script text under a name, with `variables` in scope at its top level.
    pub fn compile_text_with(
        limits: &ScriptLimits,
        name: &str,
        text: &str,
        variables: &[&str],
    ) -> Result<Self, ScriptError> {
        let mut scope = Scope::new();
        for variable in variables {
            scope.push_dynamic(*variable, Dynamic::UNIT);
        }
        // Imported modules run their top level while the script compiles: under the limits too.
        let mut ast = with_engine(limits, |engine| {
            with_deadline(limits, || engine.compile_into_self_contained(&scope, text)).map_err(|error| match *error {
                EvalAltResult::ErrorParsing(ref parse, position) => ScriptError {
                    line: position.line(),
                    column: position.position(),
                    ..ScriptError::new(name, ScriptErrorKind::Compile, parse.to_string())
                },
                ref other => ScriptError {
                    kind: ScriptErrorKind::Compile,
                    ..ScriptError::from_eval(name, other)
                },
            })
        })?;
        ast.set_source(name);
        let functions = ast
            .iter_functions()
            .map(|function| (function.name.to_owned(), function.params.len()))
            .collect();
        Ok(Self {
            name: name.to_owned(),
            digest: Sha256::digest(text.as_bytes()).into(),
            ast: Arc::new(ast),
            functions,
        })
    }

    /// The script's name (path or inline location).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A digest of the script text (changes when the text does).
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }

    /// True when the script defines `name` with `arity` parameters.
    pub fn has_function(&self, name: &str, arity: usize) -> bool {
        self.functions
            .iter()
            .any(|(known, params)| known == name && *params == arity)
    }

    /// Checks that every listed entry point exists.
    pub fn require_functions(&self, entry_points: &[(&str, usize)]) -> Result<(), ScriptError> {
        for (name, arity) in entry_points {
            if !self.has_function(name, *arity) {
                return Err(ScriptError::new(
                    &self.name,
                    ScriptErrorKind::Compile,
                    format!("the script must define fn {name} with {arity} parameter(s)"),
                ));
            }
        }
        Ok(())
    }

    /// Calls a function of the script with a fresh scope.
    pub fn call(&self, limits: &ScriptLimits, function: &str, arguments: Vec<Dynamic>) -> Result<Dynamic, ScriptError> {
        with_engine(limits, |engine| {
            with_deadline(limits, || {
                let options = CallFnOptions::new().eval_ast(false).rewind_scope(true);
                let started = Instant::now();
                let result =
                    engine.call_fn_with_options::<Dynamic>(options, &mut Scope::new(), &self.ast, function, arguments);
                self.finished(started, result)
            })
        })
    }

    /// Reports how an evaluation ended to the installed host and converts its error.
    fn finished<T>(&self, started: Instant, result: Result<T, Box<EvalAltResult>>) -> Result<T, ScriptError> {
        let outcome = match &result {
            Ok(_) => ScriptOutcome::Completed,
            Err(error) => ScriptOutcome::of_error(error),
        };
        host::report_finished(started.elapsed(), outcome);
        result.map_err(|error| ScriptError::from_eval(&self.name, &error))
    }

    /// Runs the script's top-level statements (e.g. `addPolicy` registrations, or an inline
    /// expression) with the given variables in scope; returns the last value.
    pub fn run(&self, limits: &ScriptLimits, variables: Vec<(&str, Dynamic)>) -> Result<Dynamic, ScriptError> {
        self.run_keeping(limits, variables, &[]).map(|(result, _)| result)
    }

    /// Like [`CompiledScript::run`], also returning the final values of the `kept` variables
    /// (so a trigger can change the `object` it was given).
    pub fn run_keeping(
        &self,
        limits: &ScriptLimits,
        variables: Vec<(&str, Dynamic)>,
        kept: &[&str],
    ) -> Result<(Dynamic, Vec<Dynamic>), ScriptError> {
        with_engine(limits, |engine| {
            with_deadline(limits, || {
                let mut scope = Scope::new();
                for (name, value) in variables {
                    scope.push_dynamic(name, value);
                }
                let started = Instant::now();
                let result = engine.eval_ast_with_scope::<Dynamic>(&mut scope, &self.ast);
                let result = self.finished(started, result)?;
                let values = kept
                    .iter()
                    .map(|name| scope.get_value::<Dynamic>(name).unwrap_or(Dynamic::UNIT))
                    .collect();
                Ok((result, values))
            })
        })
    }
}

/// Resolves `import "x"` to `<scripts dir>/x.rhai`, refusing anything outside that directory.
pub(crate) struct ScriptsDirResolver {
    base: PathBuf,
}

impl ScriptsDirResolver {
    pub(crate) fn new(base: &Path) -> Self {
        Self {
            base: base.canonicalize().unwrap_or_else(|_| base.to_path_buf()),
        }
    }
}

impl ModuleResolver for ScriptsDirResolver {
    fn resolve(
        &self,
        engine: &Engine,
        _source: Option<&str>,
        path: &str,
        position: Position,
    ) -> Result<Arc<Module>, Box<EvalAltResult>> {
        let not_found = || Box::new(EvalAltResult::ErrorModuleNotFound(path.to_owned(), position));
        let candidate = self.base.join(format!("{path}.rhai"));
        let canonical = candidate.canonicalize().map_err(|_| not_found())?;
        if !canonical.starts_with(&self.base) {
            return Err(not_found());
        }
        let text = std::fs::read_to_string(&canonical).map_err(|_| not_found())?;
        let mut ast = engine
            .compile(text)
            .map_err(|error| Box::new(EvalAltResult::ErrorInModule(path.to_owned(), error.into(), position)))?;
        // Named as conf files name scripts (`scripts/lib/mail.rhai`), never by where they live.
        let relative = canonical.strip_prefix(&self.base).unwrap_or(&canonical);
        let shown = self
            .base
            .file_name()
            .map_or_else(|| relative.to_path_buf(), |dir| Path::new(dir).join(relative));
        ast.set_source(shown.display().to_string());
        let module = Module::eval_ast_as_new(Scope::new(), &ast, engine)?;
        Ok(module.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(dir: &Path) -> ScriptLimits {
        ScriptLimits::new(dir)
    }

    #[test]
    fn compile_errors_carry_file_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let error =
            CompiledScript::compile_text(&limits(dir.path()), "scripts/bad.rhai", "let x = 1;\nlet y = ;").unwrap_err();
        assert_eq!(error.script, "scripts/bad.rhai");
        assert_eq!(error.line, Some(2));
        assert!(error.column.is_some());
        assert_eq!(error.kind, ScriptErrorKind::Compile);
        assert!(error.to_string().starts_with("scripts/bad.rhai:2:"));
    }

    #[test]
    fn functions_are_listed_and_callable() {
        let dir = tempfile::tempdir().unwrap();
        let script = CompiledScript::compile_text(&limits(dir.path()), "s", "fn add(a, b) { a + b }").unwrap();
        assert!(script.has_function("add", 2));
        assert!(script.require_functions(&[("add", 1)]).is_err());
        let sum = script
            .call(
                &limits(dir.path()),
                "add",
                vec![Dynamic::from(2_i64), Dynamic::from(3_i64)],
            )
            .unwrap();
        assert_eq!(sum.as_int().unwrap(), 5);
    }

    #[test]
    fn declared_variables_may_be_used_at_top_level() {
        let dir = tempfile::tempdir().unwrap();
        let limits = limits(dir.path());
        assert!(
            CompiledScript::compile_text(&limits, "t", "object.x = 1;").is_err(),
            "strict variables"
        );
        let script = CompiledScript::compile_text_with(&limits, "t", "object.x = 1;", &["object"]).unwrap();
        let (_, kept) = script
            .run_keeping(&limits, vec![("object", Dynamic::from(rhai::Map::new()))], &["object"])
            .unwrap();
        assert_eq!(crate::convert::to_json(&kept[0]), serde_json::json!({"x": 1}));
    }

    #[test]
    fn runtime_errors_name_the_script_and_position() {
        let dir = tempfile::tempdir().unwrap();
        let script =
            CompiledScript::compile_text(&limits(dir.path()), "boom.rhai", "fn f() {\n  throw \"no\";\n}").unwrap();
        let error = script.call(&limits(dir.path()), "f", vec![]).unwrap_err();
        assert_eq!(error.script, "boom.rhai");
        assert_eq!(error.line, Some(2));
        assert_eq!(error.kind, ScriptErrorKind::Thrown(Box::new(serde_json::json!("no"))));
        assert_eq!(error.message, "no");
    }

    #[test]
    fn throws_inside_called_functions_keep_their_meaning() {
        let dir = tempfile::tempdir().unwrap();
        let limits = limits(dir.path());
        let script =
            CompiledScript::compile_text(&limits, "s", "fn inner() { throw \"deep\"; } fn outer() { inner() }")
                .unwrap();
        let error = script.call(&limits, "outer", vec![]).unwrap_err();
        assert_eq!(error.kind, ScriptErrorKind::Thrown(Box::new(serde_json::json!("deep"))));
        assert_eq!(error.message, "deep");
    }

    #[test]
    fn imports_resolve_inside_the_scripts_dir_only() {
        let root = tempfile::tempdir().unwrap();
        let scripts = root.path().join("scripts");
        std::fs::create_dir_all(scripts.join("lib")).unwrap();
        std::fs::write(scripts.join("lib/common.rhai"), "fn twice(x) { x * 2 }").unwrap();
        std::fs::write(root.path().join("secret.rhai"), "fn leak() { 1 }").unwrap();
        let limits = limits(&scripts);
        let script =
            CompiledScript::compile_text(&limits, "s", "fn f(x) { import \"lib/common\" as c; c::twice(x) }").unwrap();
        assert_eq!(
            script
                .call(&limits, "f", vec![Dynamic::from(4_i64)])
                .unwrap()
                .as_int()
                .unwrap(),
            8
        );
        let escape = CompiledScript::compile_text(&limits, "s", "fn f() { import \"../secret\" as s; s::leak() }");
        assert!(escape.is_err(), "an import outside the scripts directory must fail");
        let absolute = CompiledScript::compile_text(
            &limits,
            "s",
            &format!(
                "fn f() {{ import \"{}\" as s; 1 }}",
                root.path().join("secret").display()
            ),
        );
        assert!(absolute.is_err());
    }
}
