//! How `q` finds lines: the rule, and the index that makes it fast.
//!
//! **The rule**: a line matches when it contains `q`, whatever the case (ASCII letters), and —
//! if `q` begins with a letter or digit — the match begins a word (a run of ASCII letters and
//! digits): `err` finds `ERROR:` and `rror` does not. This is how log search tools that index
//! their text (Elasticsearch, Quickwit, Datadog) behave; it lets the index hold words instead
//! of every trigram of every line.
//!
//! **The index**: each stored batch leaves one [`Chunk`] row per app with the distinct words
//! of that app's lines in it (a `tsvector` in a GIN index), not an entry per line. A search
//! asks the chunks which hold every word of `q` as a word's beginning, then checks only those
//! chunks' lines against the rule. Why not a trigram index per line, as before: with real log
//! text (ids, hashes, paths; ~150 distinct trigrams per 200-byte line) Postgres spent 48–57 µs
//! of CPU per line keeping it, against ~3 µs for the rest of the insert: at most ~20,000 such
//! lines/s per core. A chunk's words cost ~10 µs a line (bench/RESULTS.md, 2026-12-02).

use std::collections::BTreeSet;

use sqlx::{Postgres, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

/// Longer words are indexed (and searched) by their first this many characters: a query
/// word's beginning still finds them, and an odd 4 KB token cannot swell a chunk.
pub const WORD_CHARS: usize = 64;

/// A chunk closes at this many lines: a search reads every line of each chunk that holds the
/// words it seeks, so smaller chunks find faster. On 1,000,000 access-log lines, searches for
/// 100 matches took up to 322 ms with chunks of 1,000 lines, up to 28 ms with 50; storing
/// cost the same (~10 µs of Postgres CPU per line either way: most words of such lines are
/// unique).
pub const CHUNK_LINES: usize = 50;

/// A chunk also closes when its words reach this many bytes (a `tsvector` holds at most 1 MB).
pub const CHUNK_WORD_BYTES: usize = 256 * 1024;

/// The words of a text as written, each cut to [`WORD_CHARS`] (ASCII only: cutting bytes is
/// safe).
fn raw_words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| &w[..w.len().min(WORD_CHARS)])
}

/// The words of a text, lowercased, each cut to [`WORD_CHARS`].
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    raw_words(text).map(str::to_ascii_lowercase)
}

/// Whether `line` matches `q` by the rule above. The live stream filters with it; the history
/// asks Postgres the same ([`like_pattern`] and [`word_start_pattern`]).
pub fn matches(line: &str, q: &str) -> bool {
    if q.is_empty() {
        return true;
    }
    let line = line.as_bytes();
    let q = q.as_bytes();
    let at_word = q[0].is_ascii_alphanumeric();
    (0..line.len().saturating_sub(q.len() - 1)).any(|i| {
        line[i..i + q.len()].eq_ignore_ascii_case(q)
            && (!at_word || i == 0 || !line[i - 1].is_ascii_alphanumeric())
    })
}

/// `q` as an `ILIKE` pattern that finds it anywhere, taken literally: the history's first, cheap
/// test of a line.
pub fn like_pattern(q: &str) -> String {
    let mut p = String::with_capacity(q.len() + 2);
    p.push('%');
    for c in q.chars() {
        if matches!(c, '\\' | '%' | '_') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// When `q` begins with a letter or digit, the rule's second half as a Postgres regular
/// expression for `~*` (`q` taken literally, at the beginning of a word).
pub fn word_start_pattern(q: &str) -> Option<String> {
    if !q.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return None;
    }
    let mut p = String::with_capacity(2 * q.len() + 16);
    p.push_str("(^|[^a-zA-Z0-9])");
    for c in q.chars() {
        // A backslash before anything but a letter or digit makes it literal (ARE syntax).
        if !c.is_alphanumeric() {
            p.push('\\');
        }
        p.push(c);
    }
    Some(p)
}

/// What a chunk must hold for one of its lines to match `q`: each word of `q` as the beginning
/// of one of its words (`tsquery` text). `None` when `q` has no word: only a scan can tell.
pub fn chunk_query(q: &str) -> Option<String> {
    let words: BTreeSet<String> = words(q).collect();
    if words.is_empty() {
        return None;
    }
    // Words are ASCII letters and digits only: nothing in them needs quoting.
    Some(
        words
            .iter()
            .map(|w| format!("'{w}':*"))
            .collect::<Vec<_>>()
            .join(" & "),
    )
}

/// One app's lines of one stored batch (or of part of it), as the search index sees them.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub team_id: Uuid,
    pub app_id: Uuid,
    /// Ids and stamps of its lines span these ranges (other apps' lines may sit between).
    pub first_id: i64,
    pub last_id: i64,
    pub min_ts: OffsetDateTime,
    pub max_ts: OffsetDateTime,
    /// Its lines' distinct words, space-separated.
    pub words: String,
}

/// A stored line, as [`chunks`] needs it.
pub struct Stored<'a> {
    pub team_id: Uuid,
    pub app_id: Uuid,
    pub id: i64,
    pub ts: OffsetDateTime,
    pub line: &'a str,
}

/// The chunks of a batch of stored lines: one per app, split every [`CHUNK_LINES`] lines or
/// where its words pass [`CHUNK_WORD_BYTES`]. Pure.
pub fn chunks<'a>(lines: impl IntoIterator<Item = Stored<'a>>) -> Vec<Chunk> {
    struct Open {
        chunk: Chunk,
        words: BTreeSet<String>,
        bytes: usize,
        lines: usize,
    }
    fn close(open: Open) -> Chunk {
        let mut chunk = open.chunk;
        chunk.words = open.words.into_iter().collect::<Vec<_>>().join(" ");
        chunk
    }
    let mut done = Vec::new();
    let mut open: Vec<Open> = Vec::new();
    // One buffer for lowercasing: most words of a chunk repeat, and a repeat allocates nothing
    // (this runs for every line stored).
    let mut word = String::with_capacity(WORD_CHARS);
    for line in lines {
        let slot = match open.iter().position(|o| o.chunk.app_id == line.app_id) {
            Some(slot) if open[slot].bytes < CHUNK_WORD_BYTES && open[slot].lines < CHUNK_LINES => {
                slot
            }
            full => {
                if let Some(slot) = full {
                    done.push(close(open.swap_remove(slot)));
                }
                open.push(Open {
                    chunk: Chunk {
                        team_id: line.team_id,
                        app_id: line.app_id,
                        first_id: line.id,
                        last_id: line.id,
                        min_ts: line.ts,
                        max_ts: line.ts,
                        words: String::new(),
                    },
                    words: BTreeSet::new(),
                    bytes: 0,
                    lines: 0,
                });
                open.len() - 1
            }
        };
        let o = &mut open[slot];
        o.lines += 1;
        o.chunk.first_id = o.chunk.first_id.min(line.id);
        o.chunk.last_id = o.chunk.last_id.max(line.id);
        o.chunk.min_ts = o.chunk.min_ts.min(line.ts);
        o.chunk.max_ts = o.chunk.max_ts.max(line.ts);
        for w in raw_words(line.line) {
            word.clear();
            word.push_str(w);
            word.make_ascii_lowercase();
            if !o.words.contains(word.as_str()) {
                o.bytes += word.len() + 1;
                o.words.insert(word.clone());
            }
        }
    }
    done.extend(open.into_iter().map(close));
    done
}

/// Stores chunks, in the transaction that stores their lines.
pub async fn insert(tx: &mut Transaction<'_, Postgres>, chunks: &[Chunk]) -> sqlx::Result<()> {
    if chunks.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO log_chunks (team_id, app_id, first_id, last_id, min_ts, max_ts, words)
         SELECT t, a, f, l, t0, t1, array_to_tsvector(string_to_array(w, ' '))
         FROM UNNEST($1::uuid[], $2::uuid[], $3::bigint[], $4::bigint[], $5::timestamptz[],
                     $6::timestamptz[], $7::text[]) AS x(t, a, f, l, t0, t1, w)",
    )
    .bind(chunks.iter().map(|c| c.team_id).collect::<Vec<_>>())
    .bind(chunks.iter().map(|c| c.app_id).collect::<Vec<_>>())
    .bind(chunks.iter().map(|c| c.first_id).collect::<Vec<_>>())
    .bind(chunks.iter().map(|c| c.last_id).collect::<Vec<_>>())
    .bind(chunks.iter().map(|c| c.min_ts).collect::<Vec<_>>())
    .bind(chunks.iter().map(|c| c.max_ts).collect::<Vec<_>>())
    .bind(chunks.iter().map(|c| c.words.as_str()).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_runs_of_ascii_letters_and_digits_lowercased_and_cut() {
        let long = "x".repeat(100);
        let text = format!("GET /api/items/42?x=1 200 12ms user=Ann café_{long}");
        let got: Vec<String> = words(&text).collect();
        assert_eq!(
            got,
            [
                "get",
                "api",
                "items",
                "42",
                "x",
                "1",
                "200",
                "12ms",
                "user",
                "ann",
                "caf",
                &"x".repeat(WORD_CHARS)
            ]
        );
        assert_eq!(words("  ...  ").count(), 0);
    }

    #[test]
    fn a_match_begins_a_word_when_q_begins_with_one() {
        let line = "request 7 failed: ERROR timeout (snake_case_name, 100% done) C:\\temp";
        for q in [
            "error",
            "ERROR",
            "err",
            "failed: er",
            "Request",
            "snake_c",
            "case",
            "100%",
            "%",
            "_",
            "\\t",
            ": ERROR t",
        ] {
            assert!(matches(line, q), "{q:?} should match");
        }
        for q in [
            "rror",
            "imeout",
            "ake",
            "0%",
            "e_c",
            "error  timeout",
            "emp",
        ] {
            assert!(!matches(line, q), "{q:?} should not match");
        }
        assert!(matches("x", ""));
        assert!(!matches("ab", "abc"));
        assert!(
            matches("é error", "error"),
            "a non-ASCII letter is not part of a word"
        );
    }

    #[test]
    fn the_sql_patterns_take_q_literally() {
        assert_eq!(like_pattern("a%b_c\\d"), "%a\\%b\\_c\\\\d%");
        assert_eq!(like_pattern("line 42"), "%line 42%");
        assert_eq!(
            word_start_pattern("err").as_deref(),
            Some("(^|[^a-zA-Z0-9])err")
        );
        assert_eq!(
            word_start_pattern("a.b*(c) é").as_deref(),
            Some("(^|[^a-zA-Z0-9])a\\.b\\*\\(c\\)\\ é")
        );
        assert_eq!(word_start_pattern("%_\\"), None);
        assert_eq!(word_start_pattern("é"), None);
    }

    #[test]
    fn a_chunk_must_hold_every_word_of_q_as_a_beginning() {
        assert_eq!(
            chunk_query("user=4242 GET"),
            Some("'4242':* & 'get':* & 'user':*".into())
        );
        assert_eq!(chunk_query("% _ \\"), None);
        assert_eq!(chunk_query(""), None);
    }

    fn at(s: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(s)
    }

    #[test]
    fn a_batch_makes_a_chunk_per_app_with_its_ranges_and_words() {
        let (team, a, b) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let line = |app, id, ts, line| Stored {
            team_id: team,
            app_id: app,
            id,
            ts: at(ts),
            line,
        };
        let got = chunks([
            line(a, 10, 5, "Hello world"),
            line(b, 11, 1, "other app"),
            line(a, 12, 3, "hello again"),
        ]);
        assert_eq!(got.len(), 2);
        let of_a = got.iter().find(|c| c.app_id == a).unwrap();
        assert_eq!(
            (of_a.first_id, of_a.last_id, of_a.min_ts, of_a.max_ts),
            (10, 12, at(3), at(5))
        );
        assert_eq!(of_a.words, "again hello world");
        let of_b = got.iter().find(|c| c.app_id == b).unwrap();
        assert_eq!((of_b.first_id, of_b.last_id), (11, 11));
        assert_eq!(of_b.words, "app other");
    }

    #[test]
    fn a_chunk_is_split_by_its_lines_and_by_its_words_size() {
        let (team, app) = (Uuid::new_v4(), Uuid::new_v4());
        let split = |texts: &[String]| {
            chunks(texts.iter().enumerate().map(|(i, t)| Stored {
                team_id: team,
                app_id: app,
                id: i as i64,
                ts: at(i as i64),
                line: t,
            }))
        };
        let short: Vec<String> = (0..CHUNK_LINES * 2 + 1).map(|i| format!("l{i}")).collect();
        let got = split(&short);
        assert_eq!(got.len(), 3);
        assert_eq!(
            (got[0].first_id, got[0].last_id),
            (0, CHUNK_LINES as i64 - 1)
        );
        assert_eq!(got[2].words, format!("l{}", CHUNK_LINES * 2));
        // Lines of 1,000 distinct words each: the words' budget closes chunks first.
        let texts: Vec<String> = (0..CHUNK_LINES)
            .map(|l| {
                (0..1000)
                    .map(|w| format!("word{l:04}x{w:04}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        let got = split(&texts);
        assert!(got.len() >= 2, "{} chunks", got.len());
        for c in &got {
            // At most one line past the budget (a line is never split).
            assert!(
                c.words.len() <= CHUNK_WORD_BYTES + 16 * 1000,
                "{}",
                c.words.len()
            );
        }
        // Together they cover every line once, in order.
        assert_eq!(got[0].first_id, 0);
        assert_eq!(got.last().unwrap().last_id, CHUNK_LINES as i64 - 1);
        for pair in got.windows(2) {
            assert_eq!(pair[1].first_id, pair[0].last_id + 1);
        }
    }
}
