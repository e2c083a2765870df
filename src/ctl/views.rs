//! How the API's answers are shown: `--json` unchanged, otherwise aligned tables and
//! one-line confirmations. Fields are read leniently (a missing one shows as `-`), so a
//! server one version apart still gives a readable table.

use super::error::CtlError;
use serde_json::Value;

/// Prints `body` unchanged (`--json`) or rendered.
pub(crate) fn show(body: &str, json: bool, render: fn(&Value) -> String) -> Result<(), CtlError> {
    if json {
        println!("{}", body.trim_end());
        return Ok(());
    }
    print!("{}", render(&parse(body)?));
    Ok(())
}

pub(crate) fn parse(body: &str) -> Result<Value, CtlError> {
    serde_json::from_str(body)
        .map_err(|e| CtlError::Failed(format!("the admin API's answer is not JSON ({e}): {}", body.trim())))
}

/// `GET /upstreams`: one row per backend.
pub(crate) fn upstreams(answer: &Value) -> String {
    let mut table =
        Table::new(&["UPSTREAM", "BACKEND", "WEIGHT", "HEALTHY", "ROTATION", "DRAINING", "SESSIONS", "REQUESTS"]);
    for pool in list(answer, "upstreams") {
        for b in list(pool, "backends") {
            let flags = ["healthy", "in_rotation", "draining"].map(|key| yes_no(&b[key]));
            table.row(
                [text(&pool["name"]), text(&b["address"]), text(&b["weight"])]
                    .into_iter()
                    .chain(flags)
                    .chain([text(&b["sessions"]), text(&b["requests"])]),
            );
        }
    }
    table.render()
}

/// `GET /sessions`: one row per session, and the total when `--limit` cut the list.
pub(crate) fn sessions(answer: &Value) -> String {
    let rows = list(answer, "sessions");
    let mut table = Table::new(&[
        "ID",
        "CLIENT",
        "ROUTE",
        "UPSTREAM",
        "BACKEND",
        "SUBPROTOCOL",
        "AGE",
        "IDLE",
        "BYTES IN",
        "BYTES OUT",
        "MSGS IN",
        "MSGS OUT",
    ]);
    for s in rows {
        let names = ["id", "client", "route", "upstream", "backend", "subprotocol"].map(|key| text(&s[key]));
        let times = ["age_secs", "idle_secs"].map(|key| age(&s[key]));
        let counts = ["bytes_in", "bytes_out", "messages_in", "messages_out"].map(|key| text(&s[key]));
        table.row(names.into_iter().chain(times).chain(counts));
    }
    let total = answer["total"].as_u64().unwrap_or(rows.len() as u64);
    let mut out = table.render();
    if total as usize != rows.len() {
        out.push_str(&format!(
            "{} of {total} sessions shown (bytes and messages `in` are client to backend)\n",
            rows.len()
        ));
    }
    out
}

/// `POST .../enable`.
pub(crate) fn enabled(answer: &Value) -> String {
    format!("{} {}: back in rotation\n", text(&answer["upstream"]), text(&answer["backend"]))
}

/// `DELETE /sessions/{id}`.
pub(crate) fn closed(answer: &Value) -> String {
    format!("session {} closed with code {}\n", text(&answer["id"]), text(&answer["code"]))
}

/// `answer[key]` as a list, empty when absent.
pub(crate) fn list<'a>(answer: &'a Value, key: &str) -> &'a [Value] {
    answer[key].as_array().map_or(&[], Vec::as_slice)
}

/// A cell: strings without their quotes, `-` for null or missing.
pub(crate) fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn yes_no(value: &Value) -> String {
    match value.as_bool() {
        Some(true) => "yes".to_string(),
        Some(false) => "no".to_string(),
        None => "-".to_string(),
    }
}

/// Seconds as a person reads an age: `12.5s`, `3m05s`, `2h03m`, `1d04h`.
pub(crate) fn age(value: &Value) -> String {
    let Some(secs) = value.as_f64().filter(|s| s.is_finite() && *s >= 0.0) else { return text(value) };
    let whole = secs as u64;
    match whole {
        0..=59 => format!("{secs:.1}s"),
        60..=3599 => format!("{}m{:02}s", whole / 60, whole % 60),
        3600..=86_399 => format!("{}h{:02}m", whole / 3600, whole % 3600 / 60),
        _ => format!("{}d{:02}h", whole / 86_400, whole % 86_400 / 3600),
    }
}

/// Columns padded to their widest cell, two spaces apart; numbers right-aligned so their
/// digits line up.
pub(crate) struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(header: &[&str]) -> Table {
        Table { rows: vec![header.iter().map(|h| h.to_string()).collect()] }
    }

    pub(crate) fn row(&mut self, cells: impl IntoIterator<Item = String>) {
        self.rows.push(cells.into_iter().collect());
    }

    pub(crate) fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let width = |c: usize| self.rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns).map(width).collect();
        let numeric: Vec<bool> = (0..columns).map(|c| self.is_numeric(c)).collect();
        let mut out = String::new();
        for row in &self.rows {
            let cells: Vec<String> = row.iter().enumerate().map(|(c, s)| pad(s, widths[c], numeric[c])).collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
        out
    }

    /// A column of numbers, where `-` (no value) may stand in for some but not all.
    fn is_numeric(&self, column: usize) -> bool {
        let mut cells = self.rows[1..].iter().filter_map(|r| r.get(column)).filter(|s| *s != "-").peekable();
        cells.peek().is_some() && cells.all(|s| is_number(s))
    }
}

fn pad(cell: &str, width: usize, right: bool) -> String {
    if right {
        format!("{cell:>width$}")
    } else {
        format!("{cell:<width$}")
    }
}

/// `3`, `12.5`; not `127.0.0.1`.
fn is_number(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit() || b == b'.') && s.parse::<f64>().is_ok()
}
