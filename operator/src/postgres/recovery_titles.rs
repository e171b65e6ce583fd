//! How far a starting standby has got before it accepts connections, read from the titles
//! PostgreSQL gives its processes: the startup process names the WAL file it reads
//! (`startup recovering 000000020000000000000004`, `startup waiting for …`) and the WAL receiver
//! the position it received (`walreceiver streaming 0/5012345`). Before a standby is consistent
//! nothing can be asked over SQL; these titles are what shows it is moving.

use super::Lsn;

/// What the titles show. Segments are compared without their timeline: the number only grows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryTitles {
    /// The segment the startup process reads or waits for (log and segment number).
    pub segment: Option<u64>,
    /// The WAL file name it reads or waits for, as PostgreSQL wrote it.
    pub file: Option<String>,
    /// It waits for that file to arrive (`waiting for`), rather than replaying from it
    /// (`recovering`): only then can the upstream's lack of it be the reason nothing moves.
    pub waiting: bool,
    /// What the WAL receiver received.
    pub received: Option<Lsn>,
}

impl RecoveryTitles {
    /// Read from the titles of the postmaster's children (any order, any other process).
    pub fn parse<'a>(titles: impl IntoIterator<Item = &'a str>) -> RecoveryTitles {
        let mut seen = RecoveryTitles::default();
        for title in titles {
            let words: Vec<&str> = title.split_whitespace().collect();
            let after = |word: &str| {
                words
                    .iter()
                    .position(|w| *w == word)
                    .and_then(|i| words.get(i + 1).copied())
            };
            if words.contains(&"startup") {
                let (file, waiting) = match after("recovering") {
                    Some(f) => (Some(f), false),
                    None => (after("for"), true),
                };
                if let Some((file, segment)) = file.and_then(|f| segment_of(f).map(|s| (f, s))) {
                    seen.segment = Some(segment);
                    seen.file = Some(file.to_string());
                    seen.waiting = waiting;
                }
            } else if words.contains(&"walreceiver") {
                if let Some(lsn) = after("streaming").and_then(|l| l.parse().ok()) {
                    seen.received = Some(lsn);
                }
            }
        }
        seen
    }
}

/// `00000002000000000000000A` → log 0, segment 0xA as one number; None for anything else.
fn segment_of(name: &str) -> Option<u64> {
    if name.len() != 24 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let log = u64::from_str_radix(&name[8..16], 16).ok()?;
    let seg = u64::from_str_radix(&name[16..24], 16).ok()?;
    Some((log << 32) | seg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_as_postgres_15_writes_them() {
        /// (titles, segment, received, waiting for the segment)
        type Case<'a> = (Vec<&'a str>, Option<u64>, Option<Lsn>, bool);
        let cases: Vec<Case> = vec![
            (
                vec![
                    "postgres: checkpointer ",
                    "postgres: startup recovering 000000020000000000000004",
                    "postgres: walreceiver streaming 0/5012345",
                ],
                Some(4),
                Some(Lsn(0x5012345)),
                false,
            ),
            (
                vec!["postgres: startup waiting for 00000003000000010000000A"],
                Some((1 << 32) | 0xA),
                None,
                true,
            ),
            // cluster_name goes before the process name
            (
                vec![
                    "postgres: lab-c: startup recovering 000000010000000000000003",
                    "postgres: lab-c: walreceiver ",
                ],
                Some(3),
                None,
                false,
            ),
            (
                vec!["postgres: startup ", "postgres: walreceiver restarting"],
                None,
                None,
                false,
            ),
            (
                vec!["postgres: startup recovering 0000000100000000000000GG"],
                None,
                None,
                false,
            ),
            (vec![], None, None, false),
        ];
        for (titles, segment, received, waiting) in cases {
            let seen = RecoveryTitles::parse(titles.iter().copied());
            assert_eq!(
                (seen.segment, seen.received, seen.waiting),
                (segment, received, waiting),
                "{titles:?}"
            );
        }
    }
}
