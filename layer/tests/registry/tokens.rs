//! A small Rust tokenizer, enough for ash's generated sources: they are
//! rustfmt-formatted, so the same item may be on one line or wrapped over
//! several; reading tokens instead of lines makes the wrapping irrelevant.

/// One token. Whitespace and comments are dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tok {
    /// An identifier or keyword: `pub`, `SwapchainKHR`, `u64`.
    Ident(String),
    /// A lifetime without its quote: `'a` is `Lifetime("a")`.
    Lifetime(String),
    /// The value of a string literal (plain, byte or raw), escapes decoded.
    Str(String),
    /// A number or character literal, as written.
    Num(String),
    /// Punctuation: one character, or `::` and `->`.
    Punct(&'static str),
}

impl Tok {
    pub fn ident(&self) -> Option<&str> {
        match self {
            Tok::Ident(s) => Some(s),
            _ => None,
        }
    }

    pub fn is(&self, word_or_punct: &str) -> bool {
        match self {
            Tok::Ident(s) => s == word_or_punct,
            Tok::Punct(p) => *p == word_or_punct,
            _ => false,
        }
    }
}

const PUNCT: &str = "{}()[]<>,;:=*&#!.+-/|^%@?$~";

pub fn tokenize(src: &str) -> Result<Vec<Tok>, String> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let word = |i: usize| -> usize {
        let mut j = i;
        while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
            j += 1;
        }
        j
    };
    while i < b.len() {
        let c = b[i];
        let rest = &src[i..];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if rest.starts_with("//") {
            i += rest.find('\n').unwrap_or(rest.len());
        } else if let Some(comment) = rest.strip_prefix("/*") {
            i += 2 + comment.find("*/").ok_or("unterminated comment")? + 2;
        } else if ["r\"", "r#\"", "r##", "br\""]
            .iter()
            .any(|p| rest.starts_with(p))
        {
            // Raw string: r"..." or r#"..."#, no escapes.
            let start = i + rest.find('r').unwrap() + 1;
            let hashes = src[start..].bytes().take_while(|&h| h == b'#').count();
            let open = start + hashes + 1;
            let close = "\"".to_string() + &"#".repeat(hashes);
            let len = src[open..].find(&close).ok_or("unterminated raw string")?;
            out.push(Tok::Str(src[open..open + len].to_string()));
            i = open + len + close.len();
        } else if c == b'"' || rest.starts_with("b\"") {
            let mut j = i + rest.find('"').unwrap() + 1;
            let mut value = String::new();
            loop {
                let ch = src[j..].chars().next().ok_or("unterminated string")?;
                j += ch.len_utf8();
                match ch {
                    '"' => break,
                    '\\' => {
                        let e = b[j];
                        j += 1;
                        value.push(match e {
                            b'0' => '\0',
                            b'n' => '\n',
                            b't' => '\t',
                            b'\n' => {
                                // Line continuation: skip the next line's indentation.
                                while b[j].is_ascii_whitespace() {
                                    j += 1;
                                }
                                continue;
                            }
                            other => other as char,
                        });
                    }
                    _ => value.push(ch),
                }
            }
            out.push(Tok::Str(value));
            i = j;
        } else if c == b'\'' {
            // A lifetime ('a, '_, 'static) or a character literal ('x', '\n').
            let j = word(i + 1);
            if j > i + 1 && b.get(j) != Some(&b'\'') {
                out.push(Tok::Lifetime(src[i + 1..j].to_string()));
                i = j;
            } else {
                let len = src[i + 2..].find('\'').ok_or("unterminated char")? + 3;
                out.push(Tok::Num(src[i..i + len].to_string()));
                i += len;
            }
        } else if c.is_ascii_digit() {
            let mut j = word(i);
            while b.get(j) == Some(&b'.') && b.get(j + 1).is_some_and(u8::is_ascii_digit) {
                j = word(j + 1);
            }
            out.push(Tok::Num(src[i..j].to_string()));
            i = j;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let j = word(i);
            out.push(Tok::Ident(src[i..j].to_string()));
            i = j;
        } else if rest.starts_with("::") {
            out.push(Tok::Punct("::"));
            i += 2;
        } else if rest.starts_with("->") {
            out.push(Tok::Punct("->"));
            i += 2;
        } else if let Some(p) = PUNCT.find(c as char) {
            out.push(Tok::Punct(&PUNCT[p..p + 1]));
            i += 1;
        } else {
            return Err(format!("unexpected character {:?}", c as char));
        }
    }
    Ok(out)
}

/// The index just past the bracket that closes the one at `open`
/// (`(`, `[`, `{` or a generic `<`).
pub fn skip_group(toks: &[Tok], open: usize) -> usize {
    let mut depth = 0i32;
    for (i, t) in toks.iter().enumerate().skip(open) {
        match t {
            Tok::Punct("(" | "[" | "{" | "<") => depth += 1,
            Tok::Punct(")" | "]" | "}" | ">") => depth -= 1,
            _ => {}
        }
        if depth == 0 {
            return i + 1;
        }
    }
    toks.len()
}

/// Splits the tokens between two brackets at the commas outside any
/// nested bracket: a field list or a parameter list.
pub fn split_commas(toks: &[Tok]) -> Vec<&[Tok]> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, t) in toks.iter().enumerate() {
        match t {
            Tok::Punct("(" | "[" | "{" | "<") => depth += 1,
            Tok::Punct(")" | "]" | "}" | ">") => depth -= 1,
            Tok::Punct(",") if depth == 0 => {
                parts.push(&toks[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < toks.len() {
        parts.push(&toks[start..]);
    }
    parts
}

/// Whether `toks[i..]` starts with `pattern`, whose space-separated words
/// are matched exactly except `_`, which matches any single token.
pub fn at(toks: &[Tok], i: usize, pattern: &str) -> bool {
    let mut rest = toks.get(i..).unwrap_or_default().iter();
    let mut matches = |w: &str| rest.next().is_some_and(|t| w == "_" || t.is(w));
    // Called at every token: reject on the first word before splitting the rest.
    let (first, others) = pattern.split_once(' ').unwrap_or((pattern, ""));
    matches(first) && others.split(' ').filter(|w| !w.is_empty()).all(matches)
}
