//! Configuration errors, each pointing at `FILE:LINE:COL`.

use std::fmt;

use serde_saphyr::Spanned;

/// One problem in a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based; 0 when the problem is with the file as a whole.
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl ConfigError {
    pub fn new(file: &str, line: u64, column: u64, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: file.to_owned(),
            line,
            column,
            message: message.into(),
        }
    }

    /// An error about the value at `at`.
    pub fn at<T>(file: &str, at: &Spanned<T>, message: impl Into<String>) -> ConfigError {
        ConfigError::new(file, at.referenced.line(), at.referenced.column(), message)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// Every problem found in a configuration file, one per line when shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn single(error: ConfigError) -> ConfigErrors {
        ConfigErrors(vec![error])
    }

    pub(super) fn from_yaml(file: &str, err: &serde_saphyr::Error) -> ConfigErrors {
        let (line, column) = err
            .location()
            .map(|at| (at.line(), at.column()))
            .unwrap_or((0, 0));
        ConfigErrors::single(ConfigError::new(file, line, column, yaml_message(err)))
    }

    pub fn iter(&self) -> impl Iterator<Item = &ConfigError> {
        self.0.iter()
    }
}

/// The parser's message without its own rendering of the position (which we
/// print in front as `FILE:LINE:COL`) and without any snippet of the file.
fn yaml_message(err: &serde_saphyr::Error) -> String {
    let text = err.without_snippet().to_string();
    let first = text.lines().next().unwrap_or_default();
    match first.rfind(" at line ") {
        Some(cut) => first[..cut].to_owned(),
        None => first.to_owned(),
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
