//! Quoting values for the four places PostgreSQL reads them: SQL, postgresql.conf, libpq
//! connection strings and password files. Each rejects what cannot be represented (NUL bytes,
//! newlines in configuration files) instead of passing something else on.

use super::error::{PgError, PgResult};

fn no_nul(what: &str, value: &str) -> PgResult<()> {
    if value.contains('\0') {
        return Err(PgError::InvalidValue {
            what: what.to_string(),
            why: "contains a NUL byte",
        });
    }
    Ok(())
}

/// A SQL string literal: `'it''s'`. Uses the `E'...'` form when backslashes are present so the
/// result means the same whatever `standard_conforming_strings` is.
pub fn sql_literal(value: &str) -> PgResult<String> {
    no_nul("SQL literal", value)?;
    let doubled = value.replace('\'', "''");
    if value.contains('\\') {
        Ok(format!("E'{}'", doubled.replace('\\', "\\\\")))
    } else {
        Ok(format!("'{doubled}'"))
    }
}

/// A SQL identifier, always quoted: `"my ""role"""`.
pub fn sql_ident(value: &str) -> PgResult<String> {
    no_nul("SQL identifier", value)?;
    if value.is_empty() {
        return Err(PgError::InvalidValue {
            what: "SQL identifier".into(),
            why: "is empty",
        });
    }
    Ok(format!("\"{}\"", value.replace('"', "\"\"")))
}

/// A configuration parameter name as `ALTER SYSTEM` and postgresql.conf accept it unquoted.
pub fn check_setting_name(name: &str) -> PgResult<()> {
    let ok_first = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let ok_rest = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.');
    if ok_first && ok_rest && name.len() < 64 {
        Ok(())
    } else {
        Err(PgError::InvalidName {
            what: "setting name",
            name: name.to_string(),
            why: "expected lowercase letters, digits, '_' and '.', starting with a letter",
        })
    }
}

/// A postgresql.conf string value: `'it''s'`, backslashes doubled. Newlines are refused.
pub fn conf_value(value: &str) -> PgResult<String> {
    no_nul("configuration value", value)?;
    if value.contains('\n') || value.contains('\r') {
        return Err(PgError::InvalidValue {
            what: "configuration value".into(),
            why: "contains a line break",
        });
    }
    Ok(format!(
        "'{}'",
        value.replace('\\', "\\\\").replace('\'', "''")
    ))
}

/// A libpq connection-string value: `'it\'s'`.
pub fn conninfo_value(value: &str) -> PgResult<String> {
    no_nul("connection string value", value)?;
    Ok(format!(
        "'{}'",
        value.replace('\\', "\\\\").replace('\'', "\\'")
    ))
}

/// A libpq connection string from keyword/value pairs, every value quoted.
pub fn conninfo(pairs: &[(&str, &str)]) -> PgResult<String> {
    let mut parts = Vec::with_capacity(pairs.len());
    for (key, value) in pairs {
        let key_ok = !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_');
        if !key_ok {
            return Err(PgError::InvalidName {
                what: "connection keyword",
                name: key.to_string(),
                why: "expected lowercase letters and '_'",
            });
        }
        parts.push(format!("{key}={}", conninfo_value(value)?));
    }
    Ok(parts.join(" "))
}

/// One field of a password file (`~/.pgpass` format): `:` and `\` escaped with `\`.
pub fn pgpass_field(value: &str) -> PgResult<String> {
    no_nul("password file field", value)?;
    if value.contains('\n') || value.contains('\r') {
        return Err(PgError::InvalidValue {
            what: "password file field".into(),
            why: "contains a line break",
        });
    }
    Ok(value.replace('\\', "\\\\").replace(':', "\\:"))
}

/// One password-file line matching `host:port`, any database, `user`.
pub fn pgpass_line(host: &str, port: u16, user: &str, password: &str) -> PgResult<String> {
    Ok(format!(
        "{}:{port}:*:{}:{}\n",
        pgpass_field(host)?,
        pgpass_field(user)?,
        pgpass_field(password)?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_literals() {
        let cases = [
            ("plain", "'plain'"),
            ("it's", "'it''s'"),
            ("''", "''''''"),
            ("back\\slash", "E'back\\\\slash'"),
            ("both\\'", "E'both\\\\'''"),
            ("", "''"),
        ];
        for (input, want) in cases {
            assert_eq!(sql_literal(input).unwrap(), want, "{input}");
        }
        assert!(sql_literal("nul\0").is_err());
    }

    #[test]
    fn sql_idents() {
        assert_eq!(sql_ident("replicator").unwrap(), "\"replicator\"");
        assert_eq!(sql_ident("a\"b").unwrap(), "\"a\"\"b\"");
        assert!(sql_ident("").is_err());
        assert!(sql_ident("a\0").is_err());
    }

    #[test]
    fn setting_names() {
        for ok in [
            "work_mem",
            "synchronous_standby_names",
            "auto_explain.log_min_duration",
        ] {
            assert!(check_setting_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Work_mem", "1x", "a b", "a;drop", "a'b", "x=y"] {
            assert!(check_setting_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn conf_values() {
        let cases = [
            ("127.0.0.1", "'127.0.0.1'"),
            ("ANY 1 (\"a\", \"b\")", "'ANY 1 (\"a\", \"b\")'"),
            ("it's", "'it''s'"),
            ("c:\\dir", "'c:\\\\dir'"),
        ];
        for (input, want) in cases {
            assert_eq!(conf_value(input).unwrap(), want, "{input}");
        }
        assert!(conf_value("a\nb").is_err());
    }

    #[test]
    fn conninfo_strings() {
        let s = conninfo(&[
            ("host", "127.0.0.1"),
            ("password", "p'w\\d x"),
            ("application_name", "b"),
        ])
        .unwrap();
        assert_eq!(
            s,
            "host='127.0.0.1' password='p\\'w\\\\d x' application_name='b'"
        );
        assert!(conninfo(&[("bad key", "x")]).is_err());
        assert!(conninfo(&[("host", "a\0")]).is_err());
    }

    #[test]
    fn pgpass_lines() {
        assert_eq!(
            pgpass_line("127.0.0.1", 5432, "rep", "a:b\\c'd").unwrap(),
            "127.0.0.1:5432:*:rep:a\\:b\\\\c'd\n"
        );
        assert!(pgpass_line("h", 1, "u", "two\nlines").is_err());
    }
}
