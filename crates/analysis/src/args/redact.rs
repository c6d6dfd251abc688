//! Finding a Secret's value in text in the forms it takes on its way out of a metric: as
//! written, percent-encoded (a URL, a form body: whole or in part, either case of hex, `+`
//! for a space), JSON- or Rust-escaped (a quoted body in an error message), and base64
//! (an `Authorization: Basic` header, a Secret's `data`), standard or URL-safe, at any
//! alignment inside a longer base64 text.
//!
//! PURE: [`redact`] is what [`ResolvedArgs::redact`](super::ResolvedArgs::redact) applies.

/// What a Secret's value is replaced with.
pub const MASK: &str = "*****";

/// The shortest base64 run, inside a longer base64 text, that is masked on its own; shorter
/// ones would mask innocent text (a run of 4 characters is 24 bits of the secret).
const MIN_BASE64_CORE: usize = 4;

/// `text` with every occurrence of every secret, in any of the forms this module knows,
/// replaced by [`MASK`]. Empty secrets are ignored.
pub fn redact<'a>(text: &str, secrets: impl IntoIterator<Item = &'a str>) -> String {
    let secrets: Vec<&str> = secrets.into_iter().filter(|s| !s.is_empty()).collect();
    if secrets.is_empty() {
        return text.to_owned();
    }
    // Base64 first: a masked base64 run could otherwise be left with a raw match cut in two.
    let mut out = text.to_owned();
    for secret in &secrets {
        for form in base64_forms(secret.as_bytes()) {
            if out.contains(form.as_str()) {
                out = out.replace(form.as_str(), MASK);
            }
        }
    }
    let encoded: Vec<Vec<Vec<Vec<u8>>>> = secrets.iter().map(|s| char_forms(s)).collect();
    mask_encoded(&out, &encoded)
}

/// Replaces every match of a secret, each character in any of its forms, longest first.
fn mask_encoded(text: &str, secrets: &[Vec<Vec<Vec<u8>>>]) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    let mut copied = 0;
    while at < bytes.len() {
        let end = secrets
            .iter()
            .filter_map(|forms| longest_match(bytes, at, forms))
            .max();
        match end {
            Some(end) if end > at => {
                out.push_str(&text[copied..at]);
                out.push_str(MASK);
                at = end;
                copied = end;
            }
            _ => at += 1,
        }
        // Matches start and end on character boundaries: every form is whole characters.
        while at < bytes.len() && !text.is_char_boundary(at) {
            at += 1;
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// The end of the longest match of the secret (as its characters' forms) starting at `at`.
fn longest_match(text: &[u8], at: usize, forms: &[Vec<Vec<u8>>]) -> Option<usize> {
    // The positions reached after matching the first i characters; a small set, as forms of
    // one character rarely share a prefix.
    let mut reached = vec![at];
    for char_forms in forms {
        let mut next: Vec<usize> = Vec::new();
        for &p in &reached {
            for form in char_forms {
                if text.get(p..p + form.len()) == Some(form.as_slice())
                    && !next.contains(&(p + form.len()))
                {
                    next.push(p + form.len());
                }
            }
        }
        if next.is_empty() {
            return None;
        }
        reached = next;
    }
    reached.into_iter().max()
}

/// Every form of each character of the secret, in the secret's order.
fn char_forms(secret: &str) -> Vec<Vec<Vec<u8>>> {
    secret.chars().map(forms_of).collect()
}

/// The forms one character takes: as is, percent-encoded (upper and lower case hex), `+` for
/// a space, and its JSON and Rust escapes.
fn forms_of(c: char) -> Vec<Vec<u8>> {
    let mut utf8 = [0; 4];
    let raw = c.encode_utf8(&mut utf8).as_bytes().to_vec();
    let mut forms = vec![raw.clone()];
    let mut push = |form: String| {
        let form = form.into_bytes();
        if !forms.contains(&form) {
            forms.push(form);
        }
    };
    // Each byte in either case of hex, independently.
    let mut percent = vec![String::new()];
    for b in &raw {
        percent = percent
            .iter()
            .flat_map(|p| [format!("{p}%{b:02X}"), format!("{p}%{b:02x}")])
            .collect();
    }
    percent.into_iter().for_each(&mut push);
    if c == ' ' {
        push("+".to_owned());
    }
    let short = match c {
        '"' => Some("\\\""),
        '\\' => Some("\\\\"),
        '/' => Some("\\/"),
        '\'' => Some("\\'"),
        '\n' => Some("\\n"),
        '\r' => Some("\\r"),
        '\t' => Some("\\t"),
        '\u{8}' => Some("\\b"),
        '\u{c}' => Some("\\f"),
        '\0' => Some("\\0"),
        _ => None,
    };
    if let Some(short) = short {
        push(short.to_owned());
    }
    // JSON's \uXXXX (UTF-16, surrogate pairs beyond the BMP), as any encoder may write it, and
    // Rust's \u{..}.
    // Each UTF-16 unit in either case of hex, independently (`\uD83D\ude00` occurs).
    let mut units = [0u16; 2];
    let mut escapes = vec![String::new()];
    for unit in c.encode_utf16(&mut units).iter() {
        escapes = escapes
            .iter()
            .flat_map(|e| [format!("{e}\\u{unit:04x}"), format!("{e}\\u{unit:04X}")])
            .collect();
    }
    escapes.into_iter().for_each(&mut push);
    push(format!("\\u{{{:x}}}", u32::from(c)));
    forms
}

/// The base64 texts that betray the secret: its whole encoding (with and without padding), and
/// for each of the three alignments it may have inside a longer encoded text, the run of
/// characters that only its bytes decide; standard and URL-safe alphabets.
fn base64_forms(secret: &[u8]) -> Vec<String> {
    let mut forms = Vec::new();
    for alphabet in [STANDARD, URL_SAFE] {
        let whole = encode(secret, alphabet);
        let bare = whole.trim_end_matches('=').to_owned();
        forms.push(whole);
        forms.push(bare);
        for shift in 0..3usize {
            let mut shifted = vec![0u8; shift];
            shifted.extend_from_slice(secret);
            let encoded = encode(&shifted, alphabet);
            // Character j carries bits 6j..6j+6 of the input: it is the secret's alone when
            // those bits lie within the secret's.
            let start = (8 * shift).div_ceil(6);
            let end = 8 * shifted.len() / 6;
            if let Some(core) = encoded.get(start..end)
                && core.len() >= MIN_BASE64_CORE
            {
                forms.push(core.to_owned());
            }
        }
    }
    // The longest first, so that a whole encoding is masked as one.
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    forms.dedup();
    forms.retain(|f| !f.is_empty());
    forms
}

/// The standard base64 alphabet.
const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
/// The URL-safe base64 alphabet.
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64 with padding, in the given alphabet.
pub(super) fn encode(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                let index = usize::try_from((n >> (18 - 6 * i)) & 63).unwrap_or(0);
                out.push(char::from(alphabet[index]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// [`encode`] in the standard alphabet, for tests.
#[cfg(test)]
pub(super) fn base64(bytes: &[u8]) -> String {
    encode(bytes, STANDARD)
}

/// [`encode`] in the URL-safe alphabet, for tests.
#[cfg(test)]
pub(super) fn base64_url(bytes: &[u8]) -> String {
    encode(bytes, URL_SAFE)
}
