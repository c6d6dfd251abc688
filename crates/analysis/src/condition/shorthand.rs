//! expr's member shorthand inside a predicate: `{asFloat(.value) > 1}` means
//! `{asFloat(#.value) > 1}`, the field of the element the predicate is called with. Argo's own
//! SkyWalking example writes conditions this way; the `expr-lang` crate parses only the long
//! form, so the shorthand is written out before parsing.

use std::borrow::Cow;

/// Words of the language that an operand may follow (`.a > 1 and .b < 2`).
const OPERATOR_WORDS: [&str; 9] = [
    "and",
    "or",
    "not",
    "in",
    "matches",
    "contains",
    "startsWith",
    "endsWith",
    "let",
];

/// `source` with every `.field` that starts an operand inside braces written `#.field`;
/// unchanged (borrowed) when it has none. String literals are left as they are.
pub(super) fn expand(source: &str) -> Cow<'_, str> {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len() + 8);
    let mut changed = false;
    let mut braces = 0usize;
    // Whether an operand may start here: at the start, after an opening bracket, a comma, an
    // operator or an operator word; not after an operand (a name, a number, a literal, a
    // closing bracket), where `.` is a member access.
    let mut operand_may_start = true;
    let mut word = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '"' | '\'' | '`') {
            // A string literal, copied whole (escapes included, except in raw backquotes).
            out.push(c);
            i += 1;
            while i < chars.len() {
                let d = chars[i];
                out.push(d);
                i += 1;
                if d == '\\' && c != '`' && i < chars.len() {
                    out.push(chars[i]);
                    i += 1;
                } else if d == c {
                    break;
                }
            }
            operand_may_start = false;
            word.clear();
            continue;
        }
        if c.is_alphanumeric() || c == '_' || c == '$' || c == '#' {
            word.push(c);
            out.push(c);
            i += 1;
            continue;
        }
        if !word.is_empty() {
            operand_may_start = OPERATOR_WORDS.contains(&word.as_str());
            word.clear();
        }
        match c {
            '.' => {
                let previous = i.checked_sub(1).map(|p| chars[p]);
                let next = chars.get(i + 1).copied();
                let starts_member = next.is_some_and(|n| n.is_alphabetic() || n == '_');
                // `..` is a range and `?.` optional chaining, never the shorthand.
                if braces > 0
                    && operand_may_start
                    && starts_member
                    && !matches!(previous, Some('.' | '?'))
                {
                    out.push('#');
                    changed = true;
                }
                out.push('.');
                operand_may_start = false;
            }
            '{' => {
                braces += 1;
                out.push(c);
                operand_may_start = true;
            }
            '}' => {
                braces = braces.saturating_sub(1);
                out.push(c);
                operand_may_start = false;
            }
            ')' | ']' => {
                out.push(c);
                operand_may_start = false;
            }
            c if c.is_whitespace() => out.push(c),
            _ => {
                // An opening bracket, a comma, a colon or an operator.
                out.push(c);
                operand_may_start = true;
            }
        }
        i += 1;
    }
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shorthand_becomes_the_element_pointer_inside_braces_only() {
        for (written, meant) in [
            (
                "all(result.data.readMetricsValues.values.values, {asFloat(.value) >= 1000})",
                "all(result.data.readMetricsValues.values.values, {asFloat(#.value) >= 1000})",
            ),
            (
                "all(result, {.a > 1 and .b < 2})",
                "all(result, {#.a > 1 and #.b < 2})",
            ),
            ("filter(result, {not .ok})", "filter(result, {not #.ok})"),
            (
                "any(result, {(.x + .y) * 2 > .z.w})",
                "any(result, {(#.x + #.y) * 2 > #.z.w})",
            ),
            (
                "map(result, {.a ? .b : .c})",
                "map(result, {#.a ? #.b : #.c})",
            ),
        ] {
            assert_eq!(expand(written), meant, "{written}");
        }
        for unchanged in [
            "result.a > 1",
            "all(result, {#.value > 1})",
            "all(result, {# > 1})",
            "all(1..3, {# > 0})",
            "all(result, {#?.a > 1})",
            "all(result, {#.a.b > 1})",
            "all(result, {f(#).x > 1})",
            "all(result, {#[0].x > 1})",
            r#"all(result, {# == ".value"})"#,
            r#"all(result, {# == "a\".b"})"#,
            "{a: 1}.a == 1",
        ] {
            assert!(
                matches!(expand(unchanged), Cow::Borrowed(_)),
                "{unchanged} -> {}",
                expand(unchanged)
            );
        }
    }
}
