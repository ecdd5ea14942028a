//! Standard output: aligned tables for people, one JSON object per line for
//! scripts, and how a body is shown in each.

use std::io::{self, BufWriter, Stdout, Write};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use remq::Message;
use serde::Serialize;

/// How a column lines up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Align {
    /// Text.
    Left,
    /// Numbers.
    Right,
}

/// One column of a table: its header and how it lines up.
#[derive(Debug)]
pub(crate) struct Column {
    /// The header, in capitals.
    pub(crate) name: &'static str,
    /// How the cells line up.
    pub(crate) align: Align,
}

impl Column {
    /// A left-aligned (text) column.
    pub(crate) const fn text(name: &'static str) -> Self {
        Column { name, align: Align::Left }
    }

    /// A right-aligned (number) column.
    pub(crate) const fn number(name: &'static str) -> Self {
        Column { name, align: Align::Right }
    }
}

/// Something a command prints: a row of a table, or a JSON object.
pub(crate) trait Record {
    /// The table's columns; [`cells`](Record::cells) returns one cell for each.
    fn columns() -> Vec<Column>;

    /// The JSON object printed with `--json` (a struct, so its keys keep their
    /// order: `id` first).
    fn json(&self) -> impl Serialize;

    /// The table row printed without `--json`.
    fn cells(&self) -> Vec<String>;
}

/// A record of one partition of a partitioned namespace: a PARTITION column
/// first, and `"partition"` after the record's own JSON keys.
pub(crate) struct InPartition<R> {
    /// The partition.
    pub(crate) partition: u32,
    /// The record.
    pub(crate) record: R,
}

impl<R: Record> Record for InPartition<R> {
    fn columns() -> Vec<Column> {
        let mut columns = R::columns();
        columns.insert(0, Column::number("PARTITION"));
        columns
    }

    fn json(&self) -> impl Serialize {
        PartitionJson { record: self.record.json(), partition: self.partition }
    }

    fn cells(&self) -> Vec<String> {
        let mut cells = self.record.cells();
        cells.insert(0, self.partition.to_string());
        cells
    }
}

/// The JSON of an [`InPartition`].
#[derive(Serialize)]
struct PartitionJson<T> {
    /// The record's keys.
    #[serde(flatten)]
    record: T,
    /// Its partition.
    partition: u32,
}

/// Standard output, buffered, in one format.
pub(crate) struct Output {
    /// `--json`: one object per line instead of a table.
    json: bool,
    /// Flushed by [`flush`](Output::flush), or when full.
    out: BufWriter<Stdout>,
    /// Column widths of the table being streamed, once its header is out.
    streamed: Option<Vec<usize>>,
}

impl Output {
    /// Standard output, in JSON lines when `json`, else in tables.
    pub(crate) fn new(json: bool) -> Self {
        Output { json, out: BufWriter::new(io::stdout()), streamed: None }
    }

    /// Whether the output is JSON lines.
    pub(crate) fn is_json(&self) -> bool {
        self.json
    }

    /// Prints `records` as a table whose columns fit them all, or as JSON lines.
    ///
    /// # Errors
    /// When stdout cannot be written (e.g. a closed pipe).
    pub(crate) fn all<R: Record>(&mut self, records: &[R]) -> io::Result<()> {
        if self.json {
            return records.iter().try_for_each(|record| self.json_line(&record.json()));
        }
        if records.is_empty() {
            return Ok(());
        }
        let rows: Vec<Vec<String>> = records.iter().map(Record::cells).collect();
        let mut widths = header_widths::<R>();
        for row in &rows {
            widen(&mut widths, row);
        }
        write_row::<R>(&mut self.out, &widths, R::columns().iter().map(|c| c.name))?;
        rows.iter().try_for_each(|row| write_row::<R>(&mut self.out, &widths, row.iter().map(String::as_str)))
    }

    /// [`all`](Self::all), naming each record's partition when `partitioned`
    /// (the namespace has partitions, or `--partition` picked one).
    pub(crate) fn all_in_partitions<R: Record>(
        &mut self,
        partitioned: bool,
        records: Vec<InPartition<R>>,
    ) -> io::Result<()> {
        if partitioned {
            self.all(&records)
        } else {
            self.all(&records.into_iter().map(|r| r.record).collect::<Vec<_>>())
        }
    }

    /// Prints one record of a stream at once (a table whose columns widen as
    /// wider cells come; the header comes before the first row), and flushes.
    ///
    /// # Errors
    /// When stdout cannot be written (e.g. a closed pipe).
    pub(crate) fn stream<R: Record>(&mut self, record: &R) -> io::Result<()> {
        if self.json {
            self.json_line(&record.json())?;
        } else {
            let row = record.cells();
            if self.streamed.is_none() {
                let widths = self.streamed.insert(header_widths::<R>());
                widen(widths, &row);
                write_row::<R>(&mut self.out, widths, R::columns().iter().map(|c| c.name))?;
            }
            let widths = self.streamed.as_mut().expect("set above");
            widen(widths, &row);
            write_row::<R>(&mut self.out, widths, row.iter().map(String::as_str))?;
        }
        self.out.flush()
    }

    /// Prints one JSON object on a line of its own.
    ///
    /// # Errors
    /// When stdout cannot be written.
    pub(crate) fn json_line(&mut self, value: &impl Serialize) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, value)?;
        self.out.write_all(b"\n")
    }

    /// Prints a line of plain text.
    ///
    /// # Errors
    /// When stdout cannot be written.
    pub(crate) fn line(&mut self, text: &str) -> io::Result<()> {
        writeln!(self.out, "{text}")
    }

    /// Writes out what is buffered.
    ///
    /// # Errors
    /// When stdout cannot be written.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// The widths of a table's headers.
fn header_widths<R: Record>() -> Vec<usize> {
    R::columns().iter().map(|c| c.name.chars().count()).collect()
}

/// Widens columns to fit `row`.
fn widen(widths: &mut [usize], row: &[String]) {
    for (width, cell) in widths.iter_mut().zip(row) {
        *width = (*width).max(cell.chars().count());
    }
}

/// Writes one line of a table, two spaces between columns; the last column is
/// not padded, so a long body does not drag trailing blanks along.
fn write_row<'a, R: Record>(
    out: &mut impl Write,
    widths: &[usize],
    cells: impl Iterator<Item = &'a str>,
) -> io::Result<()> {
    let columns = R::columns();
    let last = columns.len() - 1;
    for (i, (cell, (column, width))) in cells.zip(columns.iter().zip(widths)).enumerate() {
        let sep = if i == 0 { "" } else { "  " };
        match (column.align, i == last) {
            (Align::Right, _) => write!(out, "{sep}{cell:>width$}")?,
            (Align::Left, false) => write!(out, "{sep}{cell:<width$}")?,
            (Align::Left, true) => write!(out, "{sep}{cell}")?,
        }
    }
    writeln!(out)
}

/// A body for people: UTF-8 text with control characters escaped (so each
/// message stays on one line), or `base64:` and the bytes in base64.
pub(crate) fn body_text(body: &[u8]) -> String {
    let Ok(text) = std::str::from_utf8(body) else {
        return format!("base64:{}", BASE64.encode(body));
    };
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A body in JSON, flattened into its record: `"body"` as text when the body
/// is UTF-8, else as base64 followed by `"encoding":"base64"`.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub(crate) struct JsonBody {
    /// The text, or the base64 of the bytes.
    body: String,
    /// `base64` when the body is not UTF-8; left out otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    encoding: Option<&'static str>,
}

impl JsonBody {
    /// The JSON form of `body`.
    pub(crate) fn new(body: &[u8]) -> Self {
        match std::str::from_utf8(body) {
            Ok(text) => JsonBody { body: text.to_owned(), encoding: None },
            Err(_) => JsonBody { body: BASE64.encode(body), encoding: Some("base64") },
        }
    }
}

/// A message in JSON: `{"id":..,"channel":..,"body":..}`.
#[derive(Serialize)]
struct MessageJson<'a> {
    /// Its id.
    id: u64,
    /// Its channel.
    channel: &'a str,
    /// Its body.
    #[serde(flatten)]
    body: JsonBody,
}

impl Record for Message {
    fn columns() -> Vec<Column> {
        vec![Column::number("ID"), Column::text("CHANNEL"), Column::text("BODY")]
    }

    fn json(&self) -> impl Serialize {
        MessageJson { id: self.id.get(), channel: &self.channel, body: JsonBody::new(&self.body) }
    }

    fn cells(&self) -> Vec<String> {
        vec![self.id.to_string(), self.channel.clone(), body_text(&self.body)]
    }
}

/// Bytes for people: `512 B`, `1.5 KiB`, `3.2 MiB` …
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// A count with thousands separators: `1,234,567`.
pub(crate) fn human_count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_for_people_stay_on_one_line() {
        assert_eq!(body_text(b"hello"), "hello");
        assert_eq!(body_text("a\nb\tc\u{0}é".as_bytes()), "a\\nb\\tc\\u{0}é");
        assert_eq!(body_text(&[0xff, 0x00]), "base64:/wA=");
    }

    #[test]
    fn json_keeps_the_key_order_and_bodies_are_text_or_base64() {
        let text = Message::new(remq::MessageId::new(7), "c", "a\nb");
        assert_eq!(serde_json::to_string(&text.json()).unwrap(), r#"{"id":7,"channel":"c","body":"a\nb"}"#);
        let binary = serde_json::to_string(&JsonBody::new(&[0xff, 0x00])).unwrap();
        assert_eq!(binary, r#"{"body":"/wA=","encoding":"base64"}"#);
    }

    #[test]
    fn numbers_for_people() {
        assert_eq!(human_count(0), "0");
        assert_eq!(human_count(1234567), "1,234,567");
        assert_eq!(human_count(100), "100");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
