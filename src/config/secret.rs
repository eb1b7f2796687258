//! Secrets come from the environment or from a file, never from the
//! configuration text itself: a config file ends up in repositories, images
//! and support tickets.

use std::ffi::OsString;

/// Where `${NAME}` is looked up. The process environment in production; a
/// map in tests, which must not mutate the process environment.
pub trait Environment {
    fn var(&self, name: &str) -> Option<OsString>;
}

/// The real process environment.
pub struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn var(&self, name: &str) -> Option<OsString> {
        std::env::var_os(name)
    }
}

impl<F: Fn(&str) -> Option<OsString>> Environment for F {
    fn var(&self, name: &str) -> Option<OsString> {
        self(name)
    }
}

/// Resolves a key reference (`${ENV_VAR}` or `file:/path`) to its bytes. The
/// error message names the key and the reference, never the secret.
pub fn resolve_secret(
    name: &str,
    reference: &str,
    env: &dyn Environment,
) -> Result<Vec<u8>, String> {
    let bytes = if let Some(var) = reference
        .strip_prefix("${")
        .and_then(|r| r.strip_suffix('}'))
    {
        if var.is_empty() || !var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!(
                "key `{name}`: `${{{var}}}` is not an environment variable name"
            ));
        }
        let value = env
            .var(var)
            .ok_or_else(|| format!("key `{name}`: environment variable {var} is not set"))?;
        value.into_encoded_bytes()
    } else if let Some(path) = reference.strip_prefix("file:") {
        let mut bytes = std::fs::read(path)
            .map_err(|err| format!("key `{name}`: cannot read {path}: {}", err.kind()))?;
        // Secret files are usually written with a trailing newline.
        while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            bytes.pop();
        }
        bytes
    } else {
        return Err(format!(
            "key `{name}` must be `${{ENV_VAR}}` or `file:/path`; inline secrets are not allowed"
        ));
    };
    if bytes.len() < crate::transform::PseudonymKey::MIN_LEN {
        return Err(format!(
            "key `{name}` is {} bytes long; at least {} are required",
            bytes.len(),
            crate::transform::PseudonymKey::MIN_LEN
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<OsString> {
        (name == "SET").then(|| OsString::from("a-secret-of-24-bytes-xyz"))
    }

    #[test]
    fn resolves_environment_and_files() {
        assert_eq!(
            resolve_secret("k", "${SET}", &env).unwrap(),
            b"a-secret-of-24-bytes-xyz"
        );
        let path = std::env::temp_dir().join(format!("scrim-secret-test-{}", std::process::id()));
        std::fs::write(&path, "0123456789abcdef0123\n").unwrap();
        let reference = format!("file:{}", path.display());
        assert_eq!(
            resolve_secret("k", &reference, &env).unwrap(),
            b"0123456789abcdef0123"
        );
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn errors_name_the_key_never_the_secret() {
        let err = resolve_secret("pseudonym", "${UNSET}", &env).unwrap_err();
        assert_eq!(
            err,
            "key `pseudonym`: environment variable UNSET is not set"
        );
        let err = resolve_secret("pseudonym", "hunter2-inline-secret", &env).unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(
            resolve_secret("k", "file:/nonexistent/scrim", &env)
                .unwrap_err()
                .contains("cannot read")
        );
        let short = |_: &str| Some(OsString::from("short"));
        assert!(
            resolve_secret("k", "${X}", &short)
                .unwrap_err()
                .contains("at least 16")
        );
    }
}
