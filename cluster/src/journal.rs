//! The handled-events journal (`[diagnostics] handled_events`): one line per event a guild
//! actor of this node handled, for benchmarks and post-mortems that must know which node
//! handled what, and when (B6 measures shard handoffs with it).
//!
//! A line is `at_us node shard guild_id event id`, tab-separated: `at_us` is wall-clock time
//! in microseconds since the Unix epoch, read as the wall clock when the journal opened plus
//! the monotonic time since, so it never goes back within a process and compares across the
//! processes of one machine; `event` is `message`, `interaction` or `guild_create` (id 0).
//!
//! The guild actor only sends a small record down a channel; a thread of its own formats,
//! buffers and appends, and flushes whenever it has nothing more to write. Off (no
//! `handled_events`), the node installs no observer at all.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::str::FromStr;
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use protonn_actors::{EventObserver, HandledEvent};
use tokio::time::Instant;

/// How long [`HandledJournal::flush`] waits for the writer.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// One line of a journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandledLine {
    /// Microseconds since the Unix epoch.
    pub at_us: u64,
    /// The node's name (`[cluster] name`, `PROTONN_NODE_NAME`, or `local` outside a cluster).
    pub node: String,
    pub shard: u32,
    pub guild_id: u64,
    pub event: HandledEvent,
}

fn write_line(
    out: &mut impl fmt::Write,
    at_us: u64,
    node: &str,
    shard: u32,
    guild_id: u64,
    event: HandledEvent,
) -> fmt::Result {
    let (kind, id) = match event {
        HandledEvent::Message(id) => ("message", id),
        HandledEvent::Interaction(id) => ("interaction", id),
        HandledEvent::GuildCreate => ("guild_create", 0),
    };
    write!(out, "{at_us}\t{node}\t{shard}\t{guild_id}\t{kind}\t{id}")
}

impl fmt::Display for HandledLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_line(
            f,
            self.at_us,
            &self.node,
            self.shard,
            self.guild_id,
            self.event,
        )
    }
}

impl FromStr for HandledLine {
    type Err = String;

    fn from_str(line: &str) -> Result<Self, String> {
        let bad = || format!("not a handled-events line: {line:?}");
        let fields: Vec<&str> = line.split('\t').collect();
        let [at_us, node, shard, guild_id, kind, id] = fields[..] else {
            return Err(bad());
        };
        let id: u64 = id.parse().map_err(|_| bad())?;
        let event = match kind {
            "message" => HandledEvent::Message(id),
            "interaction" => HandledEvent::Interaction(id),
            "guild_create" => HandledEvent::GuildCreate,
            _ => return Err(bad()),
        };
        Ok(Self {
            at_us: at_us.parse().map_err(|_| bad())?,
            node: node.to_owned(),
            shard: shard.parse().map_err(|_| bad())?,
            guild_id: guild_id.parse().map_err(|_| bad())?,
            event,
        })
    }
}

/// Every complete line of the journal at `path` (a line still being written is left out).
pub fn read_journal(path: &Path) -> io::Result<Vec<HandledLine>> {
    let text = std::fs::read_to_string(path)?;
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .map(|line| {
            line.parse()
                .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))
        })
        .collect()
}

enum Entry {
    Handled {
        at_us: u64,
        guild_id: u64,
        shard: u32,
        event: HandledEvent,
    },
    Flush(mpsc::SyncSender<()>),
}

/// Appends what this node's guild actors handled to a file; install it as the node's
/// [`EventObserver`].
pub struct HandledJournal {
    entries: mpsc::Sender<Entry>,
    /// The wall clock when the journal opened, and the monotonic clock then.
    opened_us: u64,
    opened: Instant,
}

impl HandledJournal {
    /// Opens (creates, or appends to) the journal at `path` for node `node`.
    pub fn open(path: &Path, node: &str) -> io::Result<Self> {
        if node.is_empty() || node.contains(char::is_whitespace) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("node name {node:?} cannot be a journal field"),
            ));
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let (entries, received) = mpsc::channel();
        let (node, path) = (node.to_owned(), path.to_owned());
        std::thread::Builder::new()
            .name("handled-journal".to_owned())
            .spawn(move || write_entries(&received, file, &node, &path))?;
        let opened_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros() as u64;
        Ok(Self {
            entries,
            opened_us,
            opened: Instant::now(),
        })
    }

    /// Returns once every line recorded so far is in the file (or after [`FLUSH_TIMEOUT`]).
    pub fn flush(&self) {
        let (done, flushed) = mpsc::sync_channel(1);
        if self.entries.send(Entry::Flush(done)).is_ok() {
            let _ = flushed.recv_timeout(FLUSH_TIMEOUT);
        }
    }
}

impl EventObserver for HandledJournal {
    fn handled(&self, guild_id: u64, shard_id: u32, event: HandledEvent) {
        let at_us = self.opened_us + self.opened.elapsed().as_micros() as u64;
        // The writer ends only when this journal is dropped.
        let _ = self.entries.send(Entry::Handled {
            at_us,
            guild_id,
            shard: shard_id,
            event,
        });
    }
}

/// The writer thread: formats and appends until the journal is dropped; flushes whenever
/// the channel is empty, so the file lags the actors by one batch at most.
fn write_entries(entries: &mpsc::Receiver<Entry>, file: File, node: &str, path: &Path) {
    let mut out = BufWriter::with_capacity(64 * 1024, file);
    let mut line = String::with_capacity(96);
    let mut warned = false;
    let mut warn_once = |err: io::Error| {
        if !warned {
            warned = true;
            tracing::warn!(path = %path.display(), error = %err, "cannot write the handled-events journal; lines are lost");
        }
    };
    while let Ok(first) = entries.recv() {
        let mut next = Some(first);
        while let Some(entry) = next {
            match entry {
                Entry::Handled {
                    at_us,
                    guild_id,
                    shard,
                    event,
                } => {
                    line.clear();
                    let _ = write_line(&mut line, at_us, node, shard, guild_id, event);
                    line.push('\n');
                    if let Err(err) = out.write_all(line.as_bytes()) {
                        warn_once(err);
                    }
                }
                Entry::Flush(done) => {
                    if let Err(err) = out.flush() {
                        warn_once(err);
                    }
                    let _ = done.send(());
                }
            }
            next = entries.try_recv().ok();
        }
        if let Err(err) = out.flush() {
            warn_once(err);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_records_each_handled_event_with_its_node_shard_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("handled.tsv");
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros() as u64;
        let journal = HandledJournal::open(&path, "node-a").unwrap();
        let handled = [
            (10_u64 << 22, 2, HandledEvent::GuildCreate),
            (11 << 22, 3, HandledEvent::Message(1_001)),
            (11 << 22, 3, HandledEvent::Message(1_001)),
            (12 << 22, 0, HandledEvent::Interaction(7)),
        ];
        for (guild_id, shard, event) in handled {
            journal.handled(guild_id, shard, event);
        }
        journal.flush();
        let lines = read_journal(&path).unwrap();
        assert_eq!(lines.len(), handled.len(), "one line per handling");
        for (line, (guild_id, shard, event)) in lines.iter().zip(handled) {
            assert_eq!(
                (line.node.as_str(), line.shard, line.guild_id, line.event),
                ("node-a", shard, guild_id, event)
            );
            assert!(line.at_us >= before, "{line}");
        }
        assert!(lines.windows(2).all(|w| w[0].at_us <= w[1].at_us));

        // A second node process appends to the same file.
        drop(journal);
        let again = HandledJournal::open(&path, "node-b").unwrap();
        again.handled(13 << 22, 1, HandledEvent::Message(1_002));
        again.flush();
        let lines = read_journal(&path).unwrap();
        assert_eq!(lines.len(), handled.len() + 1);
        assert_eq!(lines[4].node, "node-b");
        assert_eq!(lines[4].event, HandledEvent::Message(1_002));
    }

    #[test]
    fn a_line_parses_back_and_garbage_does_not() {
        let line = HandledLine {
            at_us: 1_765_000_000_000_000,
            node: "node-b".to_owned(),
            shard: 31,
            guild_id: 81_064_346_419_642_368,
            event: HandledEvent::Message(1_300_000_000_000_000_000),
        };
        assert_eq!(line.to_string().parse::<HandledLine>(), Ok(line));
        for bad in [
            "",
            "1\tnode\t2\t3\tmessage",
            "1\tnode\t2\t3\tedit\t4",
            "x\tnode\t2\t3\tmessage\t4",
        ] {
            assert!(bad.parse::<HandledLine>().is_err(), "{bad:?}");
        }
        assert!(HandledJournal::open(Path::new("/nonexistent/dir/j"), "node").is_err());
        let dir = tempfile::tempdir().unwrap();
        assert!(HandledJournal::open(&dir.path().join("j"), "two words").is_err());
    }
}
