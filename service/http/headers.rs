//! The pure HTTP rules of media responses: byte ranges, conditional requests, entity
//! tags, the served content type and `Content-Disposition`.

use std::{ops::Range, time::SystemTime};

use http::{HeaderMap, header};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// What a request's `Range` (and `If-Range`) asks of an object of a given size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// The whole object (no `Range`, a multi-range, an unparsable one, or an
    /// `If-Range` that no longer matches): 200.
    Whole,
    /// One satisfiable range: 206.
    Part(Range<u64>),
    /// A single range that starts past the end: 416.
    Unsatisfiable,
}

/// Reads `Range` for an object of `size` bytes whose entity tag is `etag` and whose
/// last modification is `modified`. Only single `bytes=` ranges are honoured; a
/// multi-range request gets the whole object (a 200), as RFC 9110 allows.
pub fn wanted(headers: &HeaderMap, size: u64, etag: &str, modified: SystemTime) -> Wanted {
    let Some(range) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Wanted::Whole;
    };
    if let Some(if_range) = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok())
        && !if_range_holds(if_range.trim(), etag, modified)
    {
        return Wanted::Whole;
    }
    parse_range(range, size)
}

/// `If-Range`: a strong entity tag equal to `etag`, or a date exactly the last
/// modification time.
fn if_range_holds(value: &str, etag: &str, modified: SystemTime) -> bool {
    if value.starts_with('"') || value.starts_with("W/") {
        return value == etag;
    }
    httpdate::parse_http_date(value).is_ok_and(|date| date == truncate(modified))
}

/// One `bytes=` range spec of `size` bytes; anything else is the whole object.
pub fn parse_range(value: &str, size: u64) -> Wanted {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Wanted::Whole;
    };
    if spec.contains(',') {
        return Wanted::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Wanted::Whole;
    };
    let digits = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => match digits(suffix) {
            Some(0) => Wanted::Unsatisfiable,
            Some(n) => Wanted::Part(size.saturating_sub(n)..size),
            None => Wanted::Whole,
        },
        (start, "") => match digits(start) {
            Some(start) if start >= size => Wanted::Unsatisfiable,
            Some(start) => Wanted::Part(start..size),
            None => Wanted::Whole,
        },
        (start, end) => match (digits(start), digits(end)) {
            (Some(start), Some(end)) if start > end => Wanted::Whole,
            (Some(start), Some(_)) if start >= size => Wanted::Unsatisfiable,
            (Some(start), Some(end)) => Wanted::Part(start..end.saturating_add(1).min(size)),
            _ => Wanted::Whole,
        },
    }
}

/// Whether `If-None-Match` names `etag` (weak comparison) or is `*`: then 304.
/// Without it, whether `If-Modified-Since` is at or after `modified`.
pub fn not_modified(headers: &HeaderMap, etag: &str, modified: SystemTime) -> bool {
    if let Some(value) = headers.get(header::IF_NONE_MATCH) {
        let Ok(value) = value.to_str() else {
            return false;
        };
        let bare = etag.trim_start_matches("W/");
        return value
            .split(',')
            .map(str::trim)
            .any(|tag| tag == "*" || tag.trim_start_matches("W/") == bare);
    }
    headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .is_some_and(|since| since >= truncate(modified))
}

/// A time cut to whole seconds, as HTTP dates carry it.
pub fn truncate(time: SystemTime) -> SystemTime {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs)
}

/// The media types served as what they are: the image formats the server detects,
/// and WebM and MP4 video. Anything else is `application/octet-stream`.
pub fn detect_type(head: &[u8]) -> Option<&'static str> {
    if let Some((_, _, mime)) = crate::media::detect_image(head) {
        return Some(mime);
    }
    if head.starts_with(&[0x1a, 0x45, 0xdf, 0xa3]) {
        return Some("video/webm");
    }
    if head.len() >= 12 && &head[4..8] == b"ftyp" {
        return Some("video/mp4");
    }
    None
}

/// How many leading bytes [`detect_type`] needs.
pub const DETECT_BYTES: u64 = 64;

/// Characters kept as they are in an RFC 8187 `ext-value` (attr-char).
const ATTR_CHAR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// `Content-Disposition` (RFC 6266): `inline` or `attachment`, with an ASCII fallback
/// `filename` (anything outside safe ASCII becomes `_`) and the exact name in
/// `filename*=UTF-8''...`.
pub fn disposition(inline: bool, file_name: &str) -> String {
    let kind = if inline { "inline" } else { "attachment" };
    let name = if file_name.is_empty() {
        "download"
    } else {
        file_name
    };
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' && c != '%' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "{kind}; filename=\"{fallback}\"; filename*=UTF-8''{}",
        utf8_percent_encode(name, ATTR_CHAR)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Wanted::Part(0..10));
        assert_eq!(parse_range("bytes=90-", 100), Wanted::Part(90..100));
        assert_eq!(parse_range("bytes=-10", 100), Wanted::Part(90..100));
        assert_eq!(parse_range("bytes=-200", 100), Wanted::Part(0..100));
        assert_eq!(parse_range("bytes=50-500", 100), Wanted::Part(50..100));
        assert_eq!(parse_range("bytes=100-", 100), Wanted::Unsatisfiable);
        assert_eq!(parse_range("bytes=100-200", 100), Wanted::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Wanted::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Wanted::Whole);
        assert_eq!(parse_range("bytes=9-1", 100), Wanted::Whole);
        assert_eq!(parse_range("items=0-1", 100), Wanted::Whole);
        assert_eq!(parse_range("bytes=a-b", 100), Wanted::Whole);
    }

    #[test]
    fn dispositions_keep_the_exact_name() {
        assert_eq!(
            disposition(true, "cat.png"),
            "inline; filename=\"cat.png\"; filename*=UTF-8''cat.png"
        );
        assert_eq!(
            disposition(false, "résumé \"1\".pdf"),
            "attachment; filename=\"r_sum_ _1_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%221%22.pdf"
        );
    }

    #[test]
    fn conditionals() {
        let modified = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::IF_NONE_MATCH,
            "W/\"abc\", \"x\""
                .parse()
                .unwrap_or(http::HeaderValue::from_static("")),
        );
        assert!(not_modified(&headers, "\"abc\"", modified));
        assert!(!not_modified(&headers, "\"abd\"", modified));
        let mut headers = HeaderMap::new();
        headers.insert(header::RANGE, http::HeaderValue::from_static("bytes=0-1"));
        headers.insert(header::IF_RANGE, http::HeaderValue::from_static("\"old\""));
        assert_eq!(wanted(&headers, 10, "\"new\"", modified), Wanted::Whole);
        headers.insert(header::IF_RANGE, http::HeaderValue::from_static("\"new\""));
        assert_eq!(
            wanted(&headers, 10, "\"new\"", modified),
            Wanted::Part(0..2)
        );
    }
}
