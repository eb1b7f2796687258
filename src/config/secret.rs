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

/// A key longer than this is a mistake (a key is a few dozen bytes; an
/// admin token a few more), and reading more would let a reference to a
/// large or endless file (`file:/dev/zero`) take the memory of `scrim check`.
pub const MAX_SECRET_BYTES: usize = 4096;

/// Resolves a key reference (`${ENV_VAR}` or `file:/path`) to its bytes. The
/// error message names the key and the reference, never the secret. A key
/// file that group or others may read is accepted with a warning, pushed
/// to `warnings`.
pub fn resolve_secret(
    name: &str,
    reference: &str,
    env: &dyn Environment,
    warnings: &mut Vec<String>,
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
        let mut bytes = read_key_file(name, path, warnings)?;
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
    if bytes.len() > MAX_SECRET_BYTES {
        return Err(format!(
            "key `{name}` is longer than {MAX_SECRET_BYTES} bytes: a key is a few dozen"
        ));
    }
    if bytes.len() < crate::transform::PseudonymKey::MIN_LEN {
        return Err(format!(
            "key `{name}` is {} bytes long; at least {} are required",
            bytes.len(),
            crate::transform::PseudonymKey::MIN_LEN
        ));
    }
    Ok(bytes)
}

/// Reads at most one byte more than a key may have.
fn read_key_file(name: &str, path: &str, warnings: &mut Vec<String>) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let cannot = |err: std::io::Error| format!("key `{name}`: cannot read {path}: {}", err.kind());
    let file = std::fs::File::open(path).map_err(cannot)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file.metadata().map_err(cannot)?.permissions().mode();
        if mode & 0o077 != 0 {
            warnings.push(format!(
                "key `{name}`: {path} may be read by group or others (mode {:03o}); `chmod 600 {path}`",
                mode & 0o777
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = warnings;
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
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
            resolve_secret("k", "${SET}", &env, &mut Vec::new()).unwrap(),
            b"a-secret-of-24-bytes-xyz"
        );
        let path = std::env::temp_dir().join(format!("scrim-secret-test-{}", std::process::id()));
        std::fs::write(&path, "0123456789abcdef0123\n").unwrap();
        let reference = format!("file:{}", path.display());
        assert_eq!(
            resolve_secret("k", &reference, &env, &mut Vec::new()).unwrap(),
            b"0123456789abcdef0123"
        );
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn errors_name_the_key_never_the_secret() {
        let err = resolve_secret("pseudonym", "${UNSET}", &env, &mut Vec::new()).unwrap_err();
        assert_eq!(
            err,
            "key `pseudonym`: environment variable UNSET is not set"
        );
        let err = resolve_secret("pseudonym", "hunter2-inline-secret", &env, &mut Vec::new())
            .unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(
            resolve_secret("k", "file:/nonexistent/scrim", &env, &mut Vec::new())
                .unwrap_err()
                .contains("cannot read")
        );
        let short = |_: &str| Some(OsString::from("short"));
        assert!(
            resolve_secret("k", "${X}", &short, &mut Vec::new())
                .unwrap_err()
                .contains("at least 16")
        );
    }

    #[test]
    fn key_files_are_read_bounded_and_their_mode_is_checked() {
        let err = resolve_secret("k", "file:/dev/zero", &env, &mut Vec::new()).unwrap_err();
        assert!(err.contains("longer than 4096 bytes"), "{err}");
        let long = |_: &str| Some(OsString::from("x".repeat(5000)));
        assert!(resolve_secret("k", "${X}", &long, &mut Vec::new()).is_err());

        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("scrim-secret-mode-{}", std::process::id()));
        std::fs::write(&path, "0123456789abcdef0123\n").unwrap();
        let reference = format!("file:{}", path.display());
        for (mode, warned) in [(0o644, true), (0o640, true), (0o600, false), (0o400, false)] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let mut warnings = Vec::new();
            resolve_secret("k", &reference, &env, &mut warnings).unwrap();
            assert_eq!(!warnings.is_empty(), warned, "mode {mode:o}: {warnings:?}");
        }
        std::fs::remove_file(&path).unwrap();
    }
}
