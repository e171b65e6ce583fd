//! Stage and timing lines, printed as the scenario runs.

use std::time::Instant;

pub struct Stages {
    began: Instant,
    pub lines: Vec<String>,
}

impl Default for Stages {
    fn default() -> Self {
        Self {
            began: Instant::now(),
            lines: Vec::new(),
        }
    }
}

impl Stages {
    pub fn say(&mut self, line: impl AsRef<str>) {
        let text = format!(
            "[{:>7.3}s] {}",
            self.began.elapsed().as_secs_f64(),
            line.as_ref()
        );
        println!("{text}");
        self.lines.push(text);
    }
}
