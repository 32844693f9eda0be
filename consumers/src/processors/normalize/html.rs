//! HTML in ODA text fields (`Sag.resume`, `Aktør.biografi`, …) made plain
//! text: tags dropped (block tags become line breaks), character
//! references decoded, whitespace collapsed. Text without markup is left
//! alone, so "a < b" or "R&D" survive.

use std::borrow::Cow;

/// Tags that end a line of text.
const BLOCK_TAGS: &[&str] = &[
    "p",
    "div",
    "br",
    "li",
    "ul",
    "ol",
    "tr",
    "table",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "section",
];

/// The plain text of `text`, borrowed when there is nothing to do.
pub fn to_plain_text(text: &str) -> Cow<'_, str> {
    let has_tag = has_markup(text);
    let has_reference = text.contains('&');
    if !has_tag && !has_reference {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(['<', '&']) {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if rest.starts_with('<') && has_tag {
            match tag(rest) {
                Some((name, len)) => {
                    let closing = rest.starts_with("</");
                    rest = &rest[len..];
                    let name = name.to_ascii_lowercase();
                    if !closing && (name == "script" || name == "style") {
                        let close = format!("</{name}");
                        let end = rest.to_ascii_lowercase().find(&close).unwrap_or(rest.len());
                        rest = &rest[end..];
                    } else if BLOCK_TAGS.contains(&name.as_str()) {
                        out.push('\n');
                    }
                }
                None => {
                    out.push('<');
                    rest = &rest[1..];
                }
            }
        } else if rest.starts_with('&') {
            match reference(rest) {
                Some((decoded, len)) => {
                    out.push(decoded);
                    rest = &rest[len..];
                }
                None => {
                    out.push('&');
                    rest = &rest[1..];
                }
            }
        } else {
            out.push_str(&rest[..1]);
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    let plain = collapse_whitespace(&out);
    if plain == text {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(plain)
    }
}

/// Whether the text holds at least one tag (`<p>`, `</div>`, `<br/>`).
fn has_markup(text: &str) -> bool {
    let mut rest = text;
    while let Some(at) = rest.find('<') {
        if tag(&rest[at..]).is_some() {
            return true;
        }
        rest = &rest[at + 1..];
    }
    false
}

/// A tag at the start of `text`: its lower-case-able name and its length.
fn tag(text: &str) -> Option<(&str, usize)> {
    let body = text.strip_prefix('<')?;
    let body = body.strip_prefix('/').unwrap_or(body);
    let name_len = body
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == ':' || c == '-'))
        .unwrap_or(body.len());
    if name_len == 0 || !body.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let end = text.find('>')?;
    Some((&body[..name_len], end + 1))
}

/// A character reference at the start of `text`: the character and the
/// reference's length.
fn reference(text: &str) -> Option<(char, usize)> {
    let end = text[..text.len().min(12)].find(';')?;
    let name = &text[1..end];
    let decoded = if let Some(number) = name.strip_prefix('#') {
        let code = match number.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => number.parse().ok()?,
        };
        char::from_u32(code)?
    } else {
        match name {
            "nbsp" => ' ',
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            "aelig" => 'æ',
            "oslash" => 'ø',
            "aring" => 'å',
            "AElig" => 'Æ',
            "Oslash" => 'Ø',
            "Aring" => 'Å',
            "eacute" => 'é',
            "ndash" => '–',
            "mdash" => '—',
            "shy" => '\u{ad}',
            _ => return None,
        }
    };
    Some((decoded, end + 1))
}

/// Runs of spaces become one, lines are trimmed, blank lines dropped.
fn collapse_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&words.join(" "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_real_resume_becomes_plain_text() {
        let resume = "<div>\n\n\n<p>\n<strong>Forslaget er modtaget</strong> af Folketinget i dansk sprogudgave \n den&nbsp;18. december&nbsp;2013, jf. <a href=\"http://www.euo.dk/x.pdf\">Lissabontraktatens \n protokol nr. 2</a> om kontrol.</p><p>Frist&#233;n &amp; mere</p></div>";
        assert_eq!(
            to_plain_text(resume),
            "Forslaget er modtaget af Folketinget i dansk sprogudgave\nden 18. december 2013, jf. Lissabontraktatens\nprotokol nr. 2 om kontrol.\nFristén & mere"
        );
    }

    #[test]
    fn plain_text_is_left_alone() {
        for text in ["a < b and c > d", "R&D", "Lov om æ, ø og å", "x <3"] {
            assert!(
                matches!(to_plain_text(text), Cow::Borrowed(t) if t == text),
                "{text}"
            );
        }
        assert_eq!(to_plain_text("Skat &amp; afgifter"), "Skat & afgifter");
        assert_eq!(to_plain_text("AT&T; ok"), "AT&T; ok");
    }

    #[test]
    fn scripts_and_styles_vanish() {
        assert_eq!(
            to_plain_text("<style>p{}</style><p>Tekst</p><script>x()</script>"),
            "Tekst"
        );
    }
}
