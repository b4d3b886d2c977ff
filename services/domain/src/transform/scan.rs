//! A light pass over a template's source before `upon` compiles it. It
//! - refuses `include` (endpoint templates cannot register partials);
//! - places a loop guard at the top of every loop body. `upon` has no limit on loop iterations,
//!   and a loop that emits nothing never reaches the output cap, so
//!   `{% for a in xs %}{% for b in xs %}{% endfor %}{% endfor %}` over a large array would
//!   spin. The guard, `{{ 0 | __loop_guard }}`, counts iterations against a per-render budget;
//! - escapes closing braces in literal text that `upon` would misread as a closing delimiter:
//!   its lexer treats a `}` preceded by `}`, `%` or `#` as the end of a tag, so the JSON
//!   `{"a": {"b": {{ x }}}}` would not compile. Such a `}` becomes `{{ "}" }}`.
//!
//! Edits are recorded so positions in `upon`'s errors map back to the user's source.

/// Name of the formatter that counts loop iterations.
pub const LOOP_GUARD: &str = "__loop_guard";
const BRACE: &str = "{{ \"}\" }}";

/// One change: `new_len` bytes at `new_at` in the prepared source replace `old_len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edit {
    pub new_at: usize,
    pub new_len: usize,
    pub old_len: usize,
}

#[derive(Debug, Default)]
pub struct Prepared {
    /// The source to compile.
    pub source: String,
    pub edits: Vec<Edit>,
    /// Byte offset (in the original) of the first `{% include … %}`.
    pub include_at: Option<usize>,
    pub loops: usize,
}

/// Index just past the closing delimiter `close`, searching from `from` and skipping string
/// literals (which may contain delimiters). `None` when unterminated (upon reports it).
fn find_close(src: &[u8], from: usize, close: &[u8]) -> Option<usize> {
    let mut i = from;
    while i < src.len() {
        match src[i] {
            b'"' if close != b"#}" => {
                i += 1;
                while i < src.len() && src[i] != b'"' {
                    i += if src[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            _ if src[i..].starts_with(close) => return Some(i + close.len()),
            _ => i += 1,
        }
    }
    None
}

pub fn prepare(source: &str) -> Prepared {
    let src = source.as_bytes();
    let mut p = Prepared { source: String::with_capacity(source.len() + 64), ..Prepared::default() };
    let mut raw_from = 0; // start of literal text not yet copied
    let mut i = 0;
    while i < src.len() {
        let close: Option<&[u8]> = match (src[i], src.get(i + 1)) {
            (b'{', Some(b'{')) => Some(b"}}"),
            (b'{', Some(b'%')) => Some(b"%}"),
            (b'{', Some(b'#')) => Some(b"#}"),
            _ => None,
        };
        if let Some(close) = close {
            let Some(end) = find_close(src, i + 2, close) else { break };
            p.source.push_str(&source[raw_from..end]);
            raw_from = end;
            if close == b"%}" {
                let inner = source[i + 2..end - 2].trim_start_matches('-').trim_start();
                let keyword = inner.split(|c: char| !c.is_ascii_alphanumeric() && c != '_').next().unwrap_or("");
                match keyword {
                    "for" => {
                        // Keep the tag's `-%}` trimming: the guard now sits right after it.
                        let trim = if src[end - 3] == b'-' { "-" } else { "" };
                        let guard = format!("{{{{ 0 | {LOOP_GUARD} {trim}}}}}");
                        p.edits.push(Edit { new_at: p.source.len(), new_len: guard.len(), old_len: 0 });
                        p.source.push_str(&guard);
                        p.loops += 1;
                    }
                    "include" if p.include_at.is_none() => p.include_at = Some(i),
                    _ => {}
                }
            }
            i = end;
            continue;
        }
        if src[i] == b'}' && i > 0 && matches!(src[i - 1], b'}' | b'%' | b'#') {
            p.source.push_str(&source[raw_from..i]);
            p.edits.push(Edit { new_at: p.source.len(), new_len: BRACE.len(), old_len: 1 });
            p.source.push_str(BRACE);
            raw_from = i + 1;
        }
        i += 1;
    }
    p.source.push_str(&source[raw_from..]);
    p
}

/// Maps a byte offset in the prepared source back to the original source.
pub fn original_offset(offset: usize, edits: &[Edit]) -> usize {
    let (mut grown, mut shrunk) = (0usize, 0usize);
    for e in edits {
        if offset >= e.new_at + e.new_len {
            grown += e.new_len;
            shrunk += e.old_len;
        } else if offset >= e.new_at {
            // Inside an edit: point at what it replaced (or where it was inserted).
            return e.new_at + shrunk - grown;
        } else {
            break;
        }
    }
    offset + shrunk - grown
}

/// 1-based (line, column in characters) of a byte offset.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, col)
}

/// Byte offset of a 1-based (line, column in characters) position.
pub fn offset_of(source: &str, line: usize, col: usize) -> usize {
    let mut offset = 0;
    for (i, l) in source.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            return offset + l.char_indices().nth(col.saturating_sub(1)).map_or(l.len(), |(b, _)| b);
        }
        offset += l.len();
    }
    source.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_loops_and_includes_outside_strings_and_comments() {
        let src = r#"{{ "{% for x in y %}" }}{# {% for c in "comment %} #}{% for a in xs -%}{%- for b in a %}{% endfor %}{% endfor %}{% include "x" %}"#;
        let p = prepare(src);
        assert_eq!(p.loops, 2);
        assert_eq!(p.include_at, src.find("{% include"));
        assert!(
            p.source.contains(
                "{% for a in xs -%}{{ 0 | __loop_guard -}}{%- for b in a %}{{ 0 | __loop_guard }}{% endfor %}"
            )
        );
        // Keywords only count as whole words.
        assert_eq!(prepare("{% if format %}{% endif %}{% with forx as y %}{% endwith %}").loops, 0);
    }

    #[test]
    fn escapes_braces_upon_would_misread() {
        assert_eq!(prepare(r#"{"a": {"b": {{ x }}}}"#).source, r#"{"a": {"b": {{ x }}{{ "}" }}{{ "}" }}"#);
        assert_eq!(prepare("{} {{ x }} }").source, "{} {{ x }} }");
        assert_eq!(prepare("100%} #}").source, r#"100%{{ "}" }} #{{ "}" }}"#);
        assert_eq!(prepare(r#"{{ "}}}" }}"#).source, r#"{{ "}}}" }}"#);
    }

    #[test]
    fn offsets_map_back_across_edits() {
        let src = "a{% for x in y %}B{% for z in x %}C{% endfor %}{% endfor %}}}D";
        let p = prepare(src);
        for marker in ['B', 'C', 'D'] {
            let at = p.source.find(marker).unwrap();
            assert_eq!(original_offset(at, &p.edits), src.find(marker).unwrap(), "{marker}");
        }
        // Inside the escape of the second `}` of `}}`: points at that brace.
        let esc = p.source.rfind(BRACE).unwrap();
        assert_eq!(original_offset(esc + 3, &p.edits), src.find("}}D").unwrap() + 1);
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(offset_of("ab\ncd", 2, 2), 4);
        assert_eq!(line_col("é\né", 3), (2, 1));
    }
}
