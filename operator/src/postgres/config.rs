//! Configuration files in a data directory: our own settings file (included from
//! postgresql.conf), pg_hba.conf and standby.signal.

use std::path::Path;

use super::error::{PgError, PgResult};
use super::quote::{check_setting_name, conf_value};
use super::run_as::{write_private_file, RunAs};

/// Name of the settings file pgreplica owns inside a data directory.
pub const SETTINGS_FILE: &str = "pgreplica.conf";

/// Writes `data/file_name` with one `name = 'value'` line per setting, replacing it whole.
pub fn write_settings(
    data: &Path,
    file_name: &str,
    settings: &[(&str, &str)],
    run_as: Option<RunAs>,
) -> PgResult<()> {
    let mut text = String::from("# Written by pgreplica; changes here are overwritten.\n");
    for (name, value) in settings {
        check_setting_name(name)?;
        text.push_str(&format!("{name} = {}\n", conf_value(value)?));
    }
    write_private_file(&data.join(file_name), text.as_bytes(), run_as)
}

/// Makes postgresql.conf include `file_name` (appends `include_if_exists` once). Settings in the
/// included file override earlier lines of postgresql.conf; `ALTER SYSTEM` still overrides both.
pub fn ensure_included(data: &Path, file_name: &str) -> PgResult<()> {
    use std::io::Write;
    let conf = data.join("postgresql.conf");
    let line = format!("include_if_exists = {}", conf_value(file_name)?);
    let current = std::fs::read_to_string(&conf)
        .map_err(|e| PgError::io(format!("reading {}", conf.display()), e))?;
    if current.lines().any(|l| l.trim() == line) {
        return Ok(());
    }
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&conf)
        .map_err(|e| PgError::io(format!("opening {}", conf.display()), e))?;
    let sep = if current.ends_with('\n') || current.is_empty() {
        ""
    } else {
        "\n"
    };
    writeln!(file, "{sep}{line}")
        .and_then(|()| file.sync_all())
        .map_err(|e| PgError::io(format!("appending to {}", conf.display()), e))
}

/// Replaces pg_hba.conf with `lines` (each a complete rule).
pub fn write_hba(data: &Path, lines: &[String], run_as: Option<RunAs>) -> PgResult<()> {
    let mut text = String::from("# Written by pgreplica.\n");
    for line in lines {
        if line.contains('\n') {
            return Err(PgError::InvalidValue {
                what: "pg_hba.conf rule".into(),
                why: "contains a line break",
            });
        }
        text.push_str(line);
        text.push('\n');
    }
    write_private_file(&data.join("pg_hba.conf"), text.as_bytes(), run_as)
}

/// Creates standby.signal: the server starts as a standby.
pub fn write_standby_signal(data: &Path, run_as: Option<RunAs>) -> PgResult<()> {
    write_private_file(&data.join("standby.signal"), b"", run_as)
}

/// Removes standby.signal if present.
pub fn remove_standby_signal(data: &Path) -> PgResult<()> {
    let path = data.join("standby.signal");
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(PgError::io(format!("removing {}", path.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_file_and_include() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        std::fs::write(data.join("postgresql.conf"), "port = 5432").unwrap();
        write_settings(
            data,
            SETTINGS_FILE,
            &[("port", "6000"), ("primary_conninfo", "password='x''y'")],
            None,
        )
        .unwrap();
        ensure_included(data, SETTINGS_FILE).unwrap();
        ensure_included(data, SETTINGS_FILE).unwrap();
        let conf = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        assert_eq!(conf, "port = 5432\ninclude_if_exists = 'pgreplica.conf'\n");
        let ours = std::fs::read_to_string(data.join(SETTINGS_FILE)).unwrap();
        assert!(ours.contains("port = '6000'\n"), "{ours}");
        assert!(
            ours.contains("primary_conninfo = 'password=''x''''y'''\n"),
            "{ours}"
        );
        assert!(write_settings(data, "x.conf", &[("bad name", "1")], None).is_err());
        write_standby_signal(data, None).unwrap();
        assert!(data.join("standby.signal").exists());
        remove_standby_signal(data).unwrap();
        remove_standby_signal(data).unwrap();
        assert!(!data.join("standby.signal").exists());
    }
}
