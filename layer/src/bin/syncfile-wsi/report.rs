//! The doctor's report: sections of rows a person reads at a glance, and
//! the same findings as JSON for scripts and tests.

use serde_json::Value;

/// How a finding reads: good, bad, or just a fact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    Yes,
    No,
    Info,
}

impl Mark {
    pub fn of(ok: bool) -> Mark {
        if ok {
            Mark::Yes
        } else {
            Mark::No
        }
    }

    fn glyph(self) -> &'static str {
        match self {
            Mark::Yes => "ok",
            Mark::No => "--",
            Mark::Info => "  ",
        }
    }
}

pub struct Row {
    pub key: String,
    pub mark: Mark,
    pub value: String,
}

pub fn row(key: impl Into<String>, mark: Mark, value: impl Into<String>) -> Row {
    Row {
        key: key.into(),
        mark,
        value: value.into(),
    }
}

/// One part of the report: its rows, and its JSON under `name`.
pub struct Section {
    pub name: &'static str,
    pub rows: Vec<Row>,
    pub json: Value,
}

/// The table: a title per section, then `key  mark  value`, keys aligned
/// across the whole report so the marks form one column.
pub fn table(sections: &[Section]) -> String {
    let width = sections
        .iter()
        .flat_map(|s| &s.rows)
        .map(|r| r.key.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for s in sections {
        out.push_str(s.name);
        out.push('\n');
        for r in &s.rows {
            let pad = width - r.key.chars().count();
            out.push_str(&format!(
                "  {}{}  {}  {}\n",
                r.key,
                " ".repeat(pad),
                r.mark.glyph(),
                r.value
            ));
        }
    }
    out
}

/// Every section's JSON in one object, by section name.
pub fn json(sections: &[Section]) -> Value {
    Value::Object(
        sections
            .iter()
            .map(|s| (s.name.to_owned(), s.json.clone()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_line_up_across_sections() {
        let sections = [
            Section {
                name: "kernel",
                rows: vec![row("version", Mark::Info, "6.12")],
                json: Value::Null,
            },
            Section {
                name: "layer",
                rows: vec![row(
                    "enabled here",
                    Mark::No,
                    "no: ENABLE_SYNCFILE_WSI is not 1",
                )],
                json: Value::Null,
            },
        ];
        assert_eq!(
            table(&sections),
            "kernel\n  version           6.12\nlayer\n  enabled here  --  no: ENABLE_SYNCFILE_WSI is not 1\n"
        );
    }
}
