//! Key encoding: job names and task ids onto file names that cannot escape, collide or change.
//!
//! A job name or task id is any UTF-8 string of up to 512 bytes (see
//! [`tasktrack_core::validate_key`]). File systems are far pickier: `/` and `\` separate
//! directories, `..` climbs out, NUL ends a C string, some file systems fold case (`A` = `a`) or
//! normalise unicode (NFC vs NFD), and a file name holds at most 255 bytes. So every byte outside
//! `[a-z0-9_-]` is written as `%XX` (upper-case hex), upper-case letters included:
//!
//! - **Injective**: percent-encoding each byte is reversible, so two keys never share a name.
//! - **No escape**: `.`, `/`, `\` and NUL never appear literally, so a name is one plain path
//!   component that never starts with a dot (dot files are the store's own scratch space).
//! - **Case-folding safe**: letters appear only in lower case; the only upper-case characters are
//!   hex digits after `%`, and folding them yields the same byte. Two names that differ only in
//!   case therefore decode to the same key: they *are* the same key.
//! - **Normalisation safe**: non-ASCII bytes are encoded, so names are pure ASCII and no file
//!   system rewrites them; `é` (NFC) and `e\u{301}` (NFD) stay two keys.
//! - **Portable to Windows**: Windows reserves the device names `CON`, `PRN`, `AUX`, `NUL`,
//!   `COM0`–`COM9` and `LPT0`–`LPT9` in every directory, in any case and with any extension
//!   (`con.json` is the console). A name that would be one of them has its first letter
//!   escaped too (`con` → `%63on.json`); a letter is never escaped otherwise, so this stays
//!   injective. (Trailing dots and spaces, which Windows strips, are always escaped.)
//! - **Short**: an encoding longer than [`MAX_PLAIN`] bytes is cut to a prefix and suffixed with
//!   `~` and the SHA-256 of the whole key. `~` never appears in a plain name, so the two forms
//!   never collide; the full key is kept inside the JSON and checked on every read.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::{Digest, Sha256};
use std::fmt::Write;

/// Every byte but `[a-z0-9_-]` is encoded: `NON_ALPHANUMERIC` plus the upper-case letters, minus
/// `-` and `_`.
const ENCODED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .add(b'A')
    .add(b'B')
    .add(b'C')
    .add(b'D')
    .add(b'E')
    .add(b'F')
    .add(b'G')
    .add(b'H')
    .add(b'I')
    .add(b'J')
    .add(b'K')
    .add(b'L')
    .add(b'M')
    .add(b'N')
    .add(b'O')
    .add(b'P')
    .add(b'Q')
    .add(b'R')
    .add(b'S')
    .add(b'T')
    .add(b'U')
    .add(b'V')
    .add(b'W')
    .add(b'X')
    .add(b'Y')
    .add(b'Z');

/// The longest encoding used as a name as it is. Longer ones become
/// `<prefix of PREFIX bytes>~<64 hex digits>`: at most 145 bytes, well under the usual 255 even
/// with the `.json` suffix.
pub const MAX_PLAIN: usize = 145;
const PREFIX: usize = 80;

/// The file-system-safe name of a job name or task id (without extension).
pub fn encode(key: &str) -> String {
    let plain: String = utf8_percent_encode(key, ENCODED).collect();
    if is_windows_device(&plain) {
        return escape_first_letter(&plain);
    }
    if plain.len() <= MAX_PLAIN {
        return plain;
    }
    // Cut at a token boundary so the prefix stays readable (never half of a `%XX`).
    let bytes = plain.as_bytes();
    let mut cut = 0;
    while cut < bytes.len() {
        let step = if bytes[cut] == b'%' { 3 } else { 1 };
        if cut + step > PREFIX {
            break;
        }
        cut += step;
    }
    let mut name = plain[..cut].to_string();
    name.push('~');
    for byte in Sha256::digest(key.as_bytes()) {
        // Writing to a String cannot fail.
        let _ = write!(name, "{byte:02x}");
    }
    name
}

/// Whether `name` (an encoding: lower-case letters only) is a device name Windows reserves.
fn is_windows_device(name: &str) -> bool {
    let numbered = |prefix| {
        name.strip_prefix(prefix)
            .is_some_and(|n| n.len() == 1 && n.bytes().all(|b| b.is_ascii_digit()))
    };
    matches!(name, "con" | "prn" | "aux" | "nul") || numbered("com") || numbered("lpt")
}

/// `con` → `%63on`: the first character (an ASCII letter) as an escape.
fn escape_first_letter(name: &str) -> String {
    let mut chars = name.chars();
    let first = chars.next().map_or(0, u32::from);
    format!("%{first:02X}{}", chars.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn assert_safe(name: &str) {
        assert!(!name.is_empty() && name.len() <= MAX_PLAIN, "{name}");
        assert!(!name.starts_with('.'), "{name}");
        assert!(
            name.bytes().all(|b| b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || matches!(b, b'-' | b'_' | b'%' | b'~' | b'A'..=b'F')),
            "{name}"
        );
    }

    #[test]
    fn plain_keys_stay_readable() {
        assert_eq!(encode("task-001_a"), "task-001_a");
        assert_eq!(encode("a.png"), "a%2Epng");
    }

    #[test]
    fn path_syntax_is_encoded() {
        assert_eq!(encode(".."), "%2E%2E");
        assert_eq!(encode("../etc/passwd"), "%2E%2E%2Fetc%2Fpasswd");
        assert_eq!(encode("a\\b"), "a%5Cb");
        assert_eq!(encode("a\0b"), "a%00b");
        assert_eq!(encode("100%"), "100%25");
        for k in ["..", ".", "/", "\\", "\0", "%", "%25", "a/../b", "~x", " "] {
            assert_safe(&encode(k));
        }
    }

    #[test]
    fn windows_device_names_are_escaped() {
        assert_eq!(encode("con"), "%63on");
        assert_eq!(encode("CON"), "%43%4F%4E");
        assert_eq!(encode("nul"), "%6Eul");
        assert_eq!(encode("com1"), "%63om1");
        assert_eq!(encode("lpt9"), "%6Cpt9");
        assert_eq!(encode("aux.txt"), "aux%2Etxt");
        // Not devices: kept as they are.
        assert_eq!(encode("com10"), "com10");
        assert_eq!(encode("console"), "console");
        assert_eq!(encode("comx"), "comx");
        // Still injective: the key that looks like the escape is escaped itself.
        assert_eq!(encode("%63on"), "%2563on");
        for k in ["con", "prn", "aux", "nul", "com0", "com9", "lpt1"] {
            assert_safe(&encode(k));
            assert!(!is_windows_device(&encode(k).to_lowercase()), "{k}");
        }
    }

    #[test]
    fn case_and_normalisation_never_collide() {
        let keys = [
            "A", "a", "%41", "%61", "é", "e\u{301}", "É", "Abc", "aBC", "abc",
        ];
        let names: HashSet<String> = keys.iter().map(|k| encode(k).to_lowercase()).collect();
        assert_eq!(
            names.len(),
            keys.len(),
            "case-folded names must stay distinct"
        );
    }

    #[test]
    fn long_keys_are_hashed_and_stay_distinct() {
        let a = "x".repeat(512);
        let b = format!("{}y", "x".repeat(511));
        let c = "é".repeat(256);
        let (ea, eb, ec) = (encode(&a), encode(&b), encode(&c));
        for n in [&ea, &eb, &ec] {
            assert_safe(n);
            assert!(n.contains('~'), "{n}");
        }
        assert_ne!(ea, eb);
        assert!(ec.starts_with("%C3%A9"), "{ec}");
        // The cut never splits an escape.
        let prefix = ec.split('~').next().unwrap_or_default();
        assert_eq!(prefix.len() % 3, 0, "{prefix}");
        // A key exactly at the limit is kept as is.
        assert_eq!(encode(&"z".repeat(MAX_PLAIN)), "z".repeat(MAX_PLAIN));
    }
}
