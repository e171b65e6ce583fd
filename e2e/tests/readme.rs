//! The README's commands work as written: every line of its local-runtime `sh` blocks runs, in
//! order, in a fresh directory with `examples/` and the `pgreplica` binary on PATH (the `cargo`
//! lines aside: they build what this test runs), and every `$ command` block prints what the README
//! shows. After stage 2 the story the README tells happens: a is lost, b promoted, a back.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use pgreplica_e2e::cluster::{binary, repo_file};

/// Both guides' labs listen on the default ports (15432, 15433): one at a time.
static ONE_LAB: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The README's sections whose `sh` blocks run on the local runtime, in order.
const LOCAL_SECTIONS: [&str; 1] = ["## The lab in five minutes (local runtime)"];

struct Block {
    lang: String,
    lines: Vec<String>,
}

/// The fenced blocks of `section` (up to the next `## ` heading).
fn blocks(readme: &str, section: &str) -> Vec<Block> {
    let Some(start) = readme.find(section) else {
        panic!("README has no section {section:?}");
    };
    let body = &readme[start + section.len()..];
    let body = &body[..body.find("\n## ").unwrap_or(body.len())];
    let mut out = Vec::new();
    let mut current: Option<Block> = None;
    for line in body.lines() {
        match (line.strip_prefix("```"), current.take()) {
            (Some(_), Some(block)) => out.push(block),
            (Some(lang), None) => {
                current = Some(Block {
                    lang: lang.trim().to_string(),
                    lines: Vec::new(),
                })
            }
            (None, Some(mut block)) => {
                block.lines.push(line.to_string());
                current = Some(block);
            }
            (None, None) => {}
        }
    }
    out
}

/// Stops the cluster and removes the directory whatever happens.
struct Workdir {
    dir: PathBuf,
    path: String,
}

impl Workdir {
    fn new() -> Workdir {
        let tmp = tempfile::Builder::new()
            .prefix("pgreplica-readme-")
            .tempdir()
            .expect("tempdir")
            .keep();
        // PostgreSQL runs as an unprivileged user when tests run as root: let it walk in.
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::os::unix::fs::symlink(repo_file("examples"), tmp.join("examples")).expect("link");
        let bin = tmp.join("bin");
        std::fs::create_dir(&bin).expect("bin");
        std::os::unix::fs::symlink(binary(), bin.join("pgreplica")).expect("link");
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Workdir { dir: tmp, path }
    }

    /// One README line through bash, as a person would type it.
    fn sh(&self, line: &str) -> (bool, String) {
        bash(line, &self.dir, &self.path)
    }

    fn status(&self) -> serde_json::Value {
        let (_, text) = self.sh("pgreplica local status -o json 2>/dev/null");
        serde_json::from_str(&text).unwrap_or_default()
    }
}

/// `line` through bash in `dir` with `path` as PATH: whether it succeeded, and stdout then stderr.
fn bash(line: &str, dir: &Path, path: &str) -> (bool, String) {
    let out = Command::new("bash")
        .args(["-o", "pipefail", "-c", line])
        .current_dir(dir)
        .env("PATH", path)
        .env_remove("PGREPLICA_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("bash");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

impl Drop for Workdir {
    fn drop(&mut self) {
        let _ = self.sh("pgreplica local down --purge");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn wait_for(work: &Workdir, what: &str, cond: impl Fn(&serde_json::Value) -> bool) {
    let found = pgreplica_e2e::poll::until_blocking(Duration::from_secs(180), || {
        let status = work.status();
        cond(&status).then_some(())
    });
    assert!(
        found.is_some(),
        "README stage 2: {what} did not happen; status:\n{:#}",
        work.status()
    );
}

/// Runs every line of the `sh` blocks of `sections` of `file` in `work`, in order; how many ran.
fn run_sections(work: &Workdir, file: &str, sections: &[&str]) -> usize {
    let text = std::fs::read_to_string(repo_file(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let mut ran = 0;
    for section in sections {
        for block in blocks(&text, section).iter().filter(|b| b.lang == "sh") {
            for line in &block.lines {
                let command = line.trim();
                if command.is_empty() || command.starts_with('#') || command.starts_with("cargo ") {
                    continue;
                }
                let (ok, text) = work.sh(command);
                println!("$ {command}\n{text}");
                assert!(ok, "{file} command failed: {command}\n{text}");
                ran += 1;
            }
        }
    }
    ran
}

#[test]
fn every_local_command_of_the_readme_works_as_written() {
    let _one = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
    let work = Workdir::new();
    let ran = run_sections(&work, "README.md", &LOCAL_SECTIONS);
    assert!(ran >= 8, "only {ran} README commands found");
    // what the README says stage 2 does
    let reasons = |s: &serde_json::Value| -> Vec<String> {
        s["events"]
            .as_array()
            .map(|e| {
                e.iter()
                    .filter_map(|e| e["reason"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    wait_for(&work, "a lost, b promoted", |s| {
        let r = reasons(s);
        r.iter().any(|r| r == "PrimaryLost") && r.iter().any(|r| r == "Promoted")
    });
    wait_for(&work, "the primary back on a, Healthy", |s| {
        s["currentPrimary"] == "a"
            && s["phase"] == "Healthy"
            && reasons(s).iter().any(|r| r == "FailbackStarted")
    });
}

/// `$ command` blocks show a command and what it prints: it prints exactly that.
#[test]
fn every_shown_output_of_the_readme_is_what_the_command_prints() {
    let readme = std::fs::read_to_string(repo_file("README.md")).expect("README.md");
    let mut shown = 0;
    let sections: Vec<&str> = readme
        .match_indices("\n## ")
        .map(|(i, _)| readme[i + 1..].lines().next().unwrap_or(""))
        .collect();
    let path = format!(
        "{}:{}",
        binary().parent().map(Path::display).expect("bin dir"),
        std::env::var("PATH").unwrap_or_default()
    );
    for section in sections {
        for block in blocks(&readme, section) {
            let Some(command) = block.lines.first().and_then(|l| l.strip_prefix("$ ")) else {
                continue;
            };
            let (_, printed) = bash(command, &repo_file(""), &path);
            let want = block.lines[1..].join("\n");
            assert_eq!(printed.trim_end(), want.trim_end(), "README: $ {command}");
            shown += 1;
        }
    }
    assert!(shown >= 1, "no `$ command` block found in the README");
}

/// docs/mistakes.md: the recipe for a bad DELETE (pause the delayed c, copy the rows out, resume)
/// works as written and gets every row back.
#[test]
fn the_mistakes_guide_gets_deleted_rows_back_as_written() {
    let _one = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
    let work = Workdir::new();
    let ran = run_sections(
        &work,
        "docs/mistakes.md",
        &["## A bad DELETE or UPDATE: pause c, copy the rows out, resume"],
    );
    assert!(ran >= 6, "only {ran} commands found in docs/mistakes.md");
    let copied = std::fs::read_to_string(work.dir.join("t.csv")).expect("t.csv");
    assert_eq!(copied.lines().count(), 1000, "rows copied out of paused c");
    let (ok, count) =
        work.sh(r#"eval "$(pgreplica local env)"; psql -tAc 'select count(*) from t'"#);
    assert!(ok, "{count}");
    assert_eq!(count.trim(), "1000", "rows back on the primary");
}
