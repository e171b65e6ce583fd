//! Generated passwords for both runtimes: never a default, never on a command line.

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// The system could not provide random bytes.
#[derive(Debug, thiserror::Error)]
#[error("no randomness: {0}")]
pub struct NoRandomness(String);

/// A random password of `len` characters from [A-Za-z0-9] (unbiased).
pub fn generate(len: usize) -> Result<String, NoRandomness> {
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        getrandom::fill(&mut buf).map_err(|e| NoRandomness(e.to_string()))?;
        for b in buf {
            // 248 = 4 * 62: reject the tail so every character is equally likely
            if b < 248 && out.len() < len {
                out.push(ALPHABET[(b % 62) as usize] as char);
            }
        }
    }
    Ok(out)
}
