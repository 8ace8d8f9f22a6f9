//! Checking a journal from end to end without changing it: `leadrouter journal verify`, and
//! the scrub a node runs after a start that skipped the segments its checkpoint covers.
//!
//! It checks what recovery checks (every batch's frame and checksum, every record decodes,
//! sequences gap-free within and across segments and equal to the segment names, no missing
//! segment) for every segment, plus each sealed segment's sale index and the checkpoint.

use std::path::Path;

use super::consumers;
use super::frame::{self, Record};
use super::sale_index;
use super::segments::{self, Segment};
use crate::store::checkpoint;

/// One thing wrong, named so that an operator can find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub file: String,
    pub offset: Option<u64>,
    pub problem: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.offset {
            Some(offset) => write!(f, "{} at offset {offset}: {}", self.file, self.problem),
            None => write!(f, "{}: {}", self.file, self.problem),
        }
    }
}

/// What a verification found.
#[derive(Debug, Default)]
pub struct Report {
    pub segments: usize,
    pub events: u64,
    pub first_sequence: u64,
    pub last_sequence: u64,
    pub bytes: u64,
    /// Damage: anything here makes `journal verify` exit non-zero.
    pub damage: Vec<Finding>,
    /// A torn tail at the end of the newest segment (a crash mid-write): cut at the next
    /// start, never acknowledged.
    pub torn_tail: Option<Finding>,
}

/// Verifies the segments of `dir` numbered `from..to` (all: `0..u64::MAX`). `dir` is only
/// read.
pub fn verify(dir: &Path, from: u64, to: u64) -> std::io::Result<Report> {
    let listed: Vec<Segment> = segments::list(dir)?.into_iter().filter(|s| (from..to).contains(&s.number)).collect();
    let newest_number = segments::list(dir)?.last().map(|s| s.number);
    let mut report = Report { segments: listed.len(), ..Report::default() };
    let mut expected: Option<u64> = None;
    // After damage the rest of a segment is unread: the next segment's name is believed.
    let mut resync = false;
    for (n, segment) in listed.iter().enumerate() {
        let name = segment.name();
        let finding = |offset: Option<u64>, problem: String| Finding { file: name.clone(), offset, problem };
        if n > 0 && segment.number != listed[n - 1].number + 1 {
            report.damage.push(finding(None, format!("segment {} is missing before it", listed[n - 1].number + 1)));
        }
        match expected {
            None => report.first_sequence = segment.first_sequence,
            Some(next) if next != segment.first_sequence && !resync => report.damage.push(finding(
                None,
                format!("starts at sequence {} where {next} was expected", segment.first_sequence),
            )),
            Some(_) => {}
        }
        resync = false;
        let mut next = segment.first_sequence;
        let bytes = std::fs::read(&segment.path)?;
        report.bytes += bytes.len() as u64;
        let mut offset = 0;
        while offset < bytes.len() {
            let checked = frame::check_batch(&bytes[offset..])
                .and_then(|(body, used)| frame::decode_body(body, frame::Decode::All).map(|records| (records, used)));
            match checked {
                Ok((records, used)) => {
                    for record in records {
                        if let Record::Ledger(event) = record {
                            if event.sequence != next {
                                let problem = format!("sequence {} where {next} was expected", event.sequence);
                                report.damage.push(finding(Some(offset as u64), problem));
                            }
                            next = event.sequence + 1;
                            report.events += 1;
                        }
                    }
                    offset += used;
                }
                Err(error) => {
                    let newest = Some(segment.number) == newest_number;
                    let follows = frame::next_valid_batch(&bytes, offset + 1);
                    let problem = match follows {
                        Some(valid) => format!("{error} (valid data follows at offset {valid})"),
                        None => error.to_string(),
                    };
                    if newest && follows.is_none() {
                        report.torn_tail = Some(finding(Some(offset as u64), format!("torn tail: {problem}")));
                    } else {
                        report.damage.push(finding(Some(offset as u64), problem));
                        resync = true;
                    }
                    break;
                }
            }
        }
        if Some(segment.number) != newest_number && !sale_index::sidecar_checks_out(&segment.path) {
            let sidecar = sale_index::sidecar_path(&segment.path);
            let file = sidecar.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            report.damage.push(Finding {
                file,
                offset: None,
                problem: "sale index missing or damaged (rebuilt from its segment on use)".into(),
            });
        }
        report.last_sequence = next.saturating_sub(1);
        expected = Some(next);
    }
    let covered_through = match checkpoint::read::<serde_json::Value>(dir) {
        Ok(checkpoint) => checkpoint.and_then(|c| c.get("segment").and_then(serde_json::Value::as_u64)),
        Err(error) => {
            let problem = error.to_string();
            report.damage.push(Finding { file: checkpoint::FILE_NAME.into(), offset: None, problem });
            None
        }
    };
    // Retention removes the oldest segments only once a checkpoint covers them.
    if let Some(first) = listed.first().filter(|s| from == 0 && s.first_sequence != 1) {
        if covered_through.is_none_or(|covered| covered <= first.number) {
            report.damage.push(Finding {
                file: first.name(),
                offset: None,
                problem: format!(
                    "the journal starts at sequence {} and no checkpoint covers the segments before it",
                    first.first_sequence
                ),
            });
        }
    }
    if let Err(error) = consumers::read(dir) {
        report.damage.push(Finding { file: consumers::FILE_NAME.into(), offset: None, problem: error.to_string() });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::journal::{Journal, JournalOptions};

    #[tokio::test]
    async fn a_clean_journal_verifies_and_a_flipped_bit_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let options = JournalOptions { segment_bytes: 2_000 };
        {
            let (journal, _) = Journal::open_with(dir.path(), options).unwrap();
            for n in 0..200u64 {
                let event = crate::domain::ledger::Event::from(crate::domain::ledger::SaleSettled {
                    sale_id: format!("sal_{n}"),
                    ..crate::domain::ledger::SaleSettled::example(chrono::Utc::now())
                });
                journal.append(event, chrono::Utc::now()).await.unwrap();
            }
            journal.close().await;
        }
        let clean = verify(dir.path(), 0, u64::MAX).unwrap();
        assert!(clean.damage.is_empty(), "{:?}", clean.damage);
        assert_eq!((clean.events, clean.first_sequence, clean.last_sequence), (200, 1, 200));
        assert!(clean.segments > 10);

        let listed = segments::list(dir.path()).unwrap();
        let mut bytes = std::fs::read(&listed[3].path).unwrap();
        bytes[100] ^= 0x10;
        std::fs::write(&listed[3].path, &bytes).unwrap();
        std::fs::remove_file(sale_index::sidecar_path(&listed[5].path)).unwrap();
        let damaged = verify(dir.path(), 0, u64::MAX).unwrap();
        let named: Vec<String> = damaged.damage.iter().map(ToString::to_string).collect();
        assert!(named.iter().any(|d| d.starts_with(&listed[3].name()) && d.contains("checksum")), "{named:?}");
        assert!(named.iter().any(|d| d.contains("sale index")), "{named:?}");
    }
}
