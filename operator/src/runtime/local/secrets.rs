//! Generated passwords: never a default, never on a command line.

use std::path::Path;

use super::error::LocalError;

/// A random password of `len` characters from [A-Za-z0-9].
fn generate(len: usize) -> Result<String, LocalError> {
    crate::password::generate(len).map_err(|e| LocalError::Failed(e.to_string()))
}

/// Write a new password to `path` (mode 0600) unless one is there; return the password.
pub fn ensure(path: &Path) -> Result<String, LocalError> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        let existing = existing.trim().to_string();
        if !existing.is_empty() {
            return Ok(existing);
        }
    }
    let password = generate(32)?;
    crate::postgres::write_private_file(path, password.as_bytes(), None)?;
    Ok(password)
}

pub fn read(path: &Path) -> Result<String, LocalError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(LocalError::io(format!("read {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_long_random_and_kept() {
        let a = generate(32).expect("random");
        let b = generate(32).expect("random");
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pw");
        let first = ensure(&path).expect("write");
        assert_eq!(ensure(&path).expect("read"), first, "never overwritten");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
