//! The static caps of a condition, checked before and right after it is parsed, so that no
//! text can make the parser or the evaluator recurse without bound or build a huge range from
//! literals: its size, its nesting, its node count and its literal ranges
//! ([`ConditionBudget`]).
//!
//! Size, nesting and nodes are read from the text by a small scanner that knows the lexical
//! rules of expr (strings, comments, brackets), before pest sees it: pest parses by
//! recursion, so a deep input must never reach it. Nesting counts brackets, and also the
//! constructs that make the parser recurse without brackets (`?:`, `??`, `if`), each as deep as
//! the rest of its bracket. Nodes are the identifiers, literals, operators and opening brackets:
//! every node of the syntax tree comes from at least one of them, so the count is never lower
//! than the tree's, and the tree is never deeper than the count.

use super::ConditionError;
use crate::limits::ConditionBudget;

/// The longest piece of a refused condition quoted in its error.
const PREVIEW_CHARS: usize = 60;

/// Checks the size, nesting and node count of a condition's text, before it is parsed.
pub(super) fn check_text(source: &str, budget: &ConditionBudget) -> Result<(), ConditionError> {
    if source.len() > budget.max_source_bytes {
        return Err(ConditionError::TooLong {
            preview: preview(source),
            bytes: source.len(),
            limit: budget.max_source_bytes,
        });
    }
    let shape = scan(source);
    if shape.depth > budget.max_nesting {
        return Err(ConditionError::TooDeep {
            condition: source.to_owned(),
            depth: shape.depth,
            limit: budget.max_nesting,
        });
    }
    if shape.nodes > budget.max_nodes {
        return Err(ConditionError::TooManyNodes {
            condition: source.to_owned(),
            nodes: shape.nodes,
            limit: budget.max_nodes,
        });
    }
    Ok(())
}

/// Checks the ranges between two integer literals of a parsed condition (`0..200000000`),
/// given the `Debug` form of its program (`tree`).
///
/// expr-lang keeps its syntax tree private, so ranges are read from that form
/// (`Range(Value(Integer(0)), Value(Integer(9)))`); a unit test pins it.
pub(super) fn check_ranges(
    source: &str,
    tree: &str,
    budget: &ConditionBudget,
) -> Result<(), ConditionError> {
    for (start, end) in literal_ranges(tree) {
        let len = (i128::from(end) - i128::from(start) + 1).max(0);
        if len > i128::from(budget.max_range_len) {
            return Err(ConditionError::RangeTooLarge {
                condition: source.to_owned(),
                start,
                end,
                len: len.unsigned_abs(),
                limit: budget.max_range_len,
            });
        }
    }
    Ok(())
}

/// The first characters of a long condition, for its error.
fn preview(source: &str) -> String {
    source.chars().take(PREVIEW_CHARS).collect()
}

/// What the scanner found in a condition's text.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Shape {
    /// The deepest nesting reached.
    pub(super) depth: usize,
    /// Identifiers, literals, operators and opening brackets.
    pub(super) nodes: usize,
}

/// Operators of two characters, counted as one node.
const TWO_CHAR_OPERATORS: [&[u8; 2]; 10] = [
    b"**", b"..", b"<=", b">=", b"==", b"!=", b"&&", b"||", b"?.", b"??",
];

/// Reads the nesting and node count of a condition's text without parsing it.
///
/// Text that does not lex (an unclosed string, a stray closing bracket) is scanned as far as it
/// goes; the parser reports it afterwards.
pub(super) fn scan(source: &str) -> Shape {
    let bytes = source.as_bytes();
    // One entry per open bracket (the first for the top level): the nesting added inside it
    // by constructs that recurse without brackets.
    let mut frames: Vec<usize> = vec![0];
    let mut unbracketed = 0usize;
    let mut shape = Shape::default();
    let mut i = 0;
    // Nesting that lasts until the end of the current bracket.
    let nest = |frames: &mut Vec<usize>, unbracketed: &mut usize, shape: &mut Shape| {
        if let Some(top) = frames.last_mut() {
            *top += 1;
        }
        *unbracketed += 1;
        shape.depth = shape.depth.max(frames.len() - 1 + *unbracketed);
    };
    while let Some(&b) = bytes.get(i) {
        match b {
            b' ' | b'\t' | b'\r' | b'\n' | b',' | b':' | b';' => i += 1,
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                i = find_from(bytes, i + 2, b"\n").map_or(bytes.len(), |end| end + 1);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = find_from(bytes, i + 2, b"*/").map_or(bytes.len(), |end| end + 2);
            }
            b'"' | b'\'' => {
                shape.nodes += 1;
                i = skip_quoted(bytes, i);
            }
            b'`' => {
                shape.nodes += 1;
                i = find_from(bytes, i + 1, b"`").map_or(bytes.len(), |end| end + 1);
            }
            b'(' | b'[' | b'{' => {
                shape.nodes += 1;
                frames.push(0);
                shape.depth = shape.depth.max(frames.len() - 1 + unbracketed);
                i += 1;
            }
            b')' | b']' | b'}' => {
                if frames.len() > 1 {
                    unbracketed -= frames.pop().unwrap_or(0);
                }
                i += 1;
            }
            b'?' if bytes.get(i + 1) == Some(&b'.') => {
                shape.nodes += 1;
                i += 2;
            }
            b'?' => {
                // A ternary or `??`: the expression after it is parsed inside it.
                shape.nodes += 1;
                nest(&mut frames, &mut unbracketed, &mut shape);
                i += if bytes.get(i + 1) == Some(&b'?') {
                    2
                } else {
                    1
                };
            }
            b if is_word_byte(b) => {
                let start = i;
                i = word_end(bytes, i);
                let word = &bytes[start..i];
                if word == b"if" {
                    nest(&mut frames, &mut unbracketed, &mut shape);
                }
                // A bytes literal: `b"…"`.
                if (word == b"b" || word == b"B") && matches!(bytes.get(i), Some(b'"' | b'\'')) {
                    i = skip_quoted(bytes, i);
                }
                shape.nodes += 1;
            }
            _ => {
                shape.nodes += 1;
                let two = bytes.get(i..i + 2);
                i += if two.is_some_and(|two| TWO_CHAR_OPERATORS.iter().any(|op| op[..] == *two)) {
                    2
                } else {
                    1
                };
            }
        }
    }
    shape
}

/// Bytes of identifiers, keywords and numbers (non-ASCII bytes too: the parser refuses them).
fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'$' | b'#') || !b.is_ascii()
}

/// The end of the word starting at `start`; a number keeps its decimal point (`1.5`) but not
/// a range operator (`0..9`).
fn word_end(bytes: &[u8], start: usize) -> usize {
    let number = bytes[start].is_ascii_digit();
    let mut i = start;
    while let Some(&b) = bytes.get(i) {
        let decimal_point =
            number && b == b'.' && bytes.get(i + 1).is_some_and(|next| next.is_ascii_digit());
        if is_word_byte(b) || decimal_point {
            i += 1;
        } else {
            break;
        }
    }
    i
}

/// The position after the string literal opening at `start` (its end, or the end of a line:
/// expr strings hold no raw line breaks).
fn skip_quoted(bytes: &[u8], start: usize) -> usize {
    let quote = bytes[start];
    let mut i = start + 1;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\\' => i += 2,
            b'\n' | b'\r' => return i,
            b if b == quote => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// The first position at or after `from` where `needle` starts.
fn find_from(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|at| from + at)
}

/// The bounds of every range between two integer literals in a program's `Debug` form.
pub(super) fn literal_ranges(debug: &str) -> Vec<(i64, i64)> {
    const RANGE: &str = "Range(";
    let mut ranges = Vec::new();
    let mut in_string = false;
    let mut escaped = false;
    for (at, c) in debug.char_indices() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        if c == '"' {
            in_string = true;
            continue;
        }
        // A node `Range(a, b)`; the slice postfix is `Range { start, end }`.
        let starts_word = debug[..at]
            .chars()
            .next_back()
            .is_none_or(|p| !p.is_alphanumeric() && p != '_');
        if starts_word && debug[at..].starts_with(RANGE) {
            let rest = &debug[at + RANGE.len()..];
            let bounds = literal_int(rest).and_then(|(start, rest)| {
                let (end, _) = literal_int(rest.strip_prefix(", ")?)?;
                Some((start, end))
            });
            ranges.extend(bounds);
        }
    }
    ranges
}

/// An integer literal at the start of a `Debug` form, with or without a sign, and what follows.
fn literal_int(text: &str) -> Option<(i64, &str)> {
    if let Some(rest) = text.strip_prefix("Value(Integer(") {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '-'))
            .unwrap_or(rest.len());
        let n = rest[..digits].parse().ok()?;
        return Some((n, rest[digits..].strip_prefix("))")?));
    }
    for (operator, negate) in [("Negative", true), ("Positive", false)] {
        let prefix = format!("Unary {{ operator: {operator}, node: ");
        if let Some(rest) = text.strip_prefix(prefix.as_str()) {
            let (n, rest): (i64, _) = literal_int(rest)?;
            let n = if negate { n.checked_neg()? } else { n };
            return Some((n, rest.strip_prefix(" }")?));
        }
    }
    None
}
