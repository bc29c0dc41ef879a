//! Card numbers (PANs) in free text: detection and masking.
//!
//! PCI DSS wants a primary account number shown at most as its BIN (first six digits) and last
//! four, and never stored or logged in the clear. Clients put card numbers where they should
//! not (a description "refund to 4111 1111 1111 1111", a metadata value, a header, a URL), so
//! every piece of free text passes through [`mask_pans`] before it is stored, logged or
//! answered, and identifiers (which masking would merge) are refused when [`contains_pan`].
//!
//! # The detection rule
//!
//! The text is read as a sequence of tokens, left to right:
//! - a **digit**: one ASCII digit `0`-`9`;
//! - a **separator unit**, one of
//!   - the bytes space, tab, `-`, `.`, `_`, `+` (how people and forms group digits: `+` is a
//!     form-encoded space);
//!   - the no-break space U+00A0, the thin spaces U+2009 and U+202F, and the hyphens and dashes
//!     U+2010 to U+2015 (what word processors put between digit groups of a pasted number);
//!   - a percent-encoded separator byte: `%20`, `%09`, `%2D`, `%2E`, `%5F`, `%2B`, `%A0`
//!     (hex digits in either case), as it arrives in URLs;
//!   - an escaped separator: one to [`ESCAPE_BACKSLASHES_MAX`] backslashes, then `t`, `u` with
//!     four hex digits, or `u{…}` with one to six, naming one of the separator characters
//!     above. JSON writes a tab as `\t`, Rust's `Debug` writes a no-break space as `\u{a0}`,
//!     and a `Debug` value inside a JSON log line doubles the backslash: without this, a PAN
//!     with tabs in a log field would reach the log line as `4111\t1111…` and slip through;
//! - anything else is a **breaker** (letters included).
//!
//! A **run** is a maximal sequence of digits in which consecutive digits are separated by at
//! most [`SEPARATORS_MAX`] separator units (none is fine: `4111111111111111`). Three allow a
//! spaced dash (`4111 - 1111`) or a doubled space; more would join numbers that merely sit
//! near each other in a table. A breaker ends a run; a letter next to a digit does not
//! prevent detection (`card4111111111111111` is caught: being conservative costs a few false
//! positives, a miss costs a PAN in the clear).
//!
//! Within a run, **every** window of [`PAN_DIGITS_MIN`] to [`PAN_DIGITS_MAX`] consecutive
//! digits (separators skipped) that starts with a digit other than `0` and whose Luhn check
//! holds is card-number-like, not only the run as a whole: a PAN glued to other digits
//! (`4111111111111111 99`, `12 4111111111111111`) is still a PAN. No card number starts with
//! `0` (ISO/IEC 7812 gives major industry identifier 0 to no card issuer), so leaving those
//! windows out misses no card, even one glued after zeros (`0004111111111111111`: the window
//! at `4` is caught); it spares zero-padded counters (`00000000000000000042` holds thirteen
//! zeros, which pass the Luhn check), which identifiers often are and which would otherwise be
//! masked, or refused as keys.
//!
//! A separator unit only continues a run: outside one, every non-digit byte is a breaker, so
//! a literal `%` before a card number that starts with `20` (`%2000000000008`) is read as
//! `%`, then digits. And the text is read twice; what either reading finds is
//! card-number-like:
//! - the *encoded* reading takes the percent-encoded and escaped separators above as
//!   separator units (within a run, the digits of `%20` or `\u{2009}` are not card digits);
//! - the *plain* reading takes the encodings that hold digits (`%XX`, `\u…`) as what they
//!   are written with: `%`, `\` and `u` are breakers, their digits are digits. Without it a
//!   literal `%` between other digits and a card number that starts with `20` or `09`
//!   (`100%2000000000008`) would hide the card number's first two digits.
//!
//! One combination neither reading sees: digits, a literal `%`, then a card number starting
//! with `20` or `09` whose digit groups are themselves percent-encoded (`1%20…%20…`). In a
//! URL a literal `%` is written `%25`, so this is malformed text made so on purpose.
//!
//! # Masking
//!
//! Each card-number-like window keeps its first [`BIN_DIGITS`] and last [`LAST_DIGITS`]
//! digits; its other digits become [`MASK_CHAR`]. Separators and everything outside windows
//! stay as they are; overlapping windows mask the union of their middles. So
//! `4111 1111 1111 1111` becomes `4111 11** **** 1111`.
//!
//! Masking turns digits into `*`, a breaker. In the plain reading that only cuts runs into
//! pieces, whose windows were windows before and are masked. In the encoded reading, masking
//! a digit inside an encoding (found by the plain reading) undoes that separator, which can
//! join digits differently; so masked text is read again, and masked again, until neither
//! reading finds anything (in practice the second read finds nothing). A text still holding
//! something after [`MASK_PASSES_MAX`] reads has every ASCII digit masked: fail closed.
//!
//! Properties (checked by the property tests below):
//! - masked text holds no card-number-like run, and masking it again changes nothing;
//! - the length, in bytes and in characters, is unchanged (an ASCII digit becomes an ASCII
//!   `*`);
//! - text without a card-number-like run comes back borrowed, untouched.
//!
//! False positives are accepted: any 13-to-19-digit Luhn-valid number that does not start
//! with `0` (an order number, a timestamp in nanoseconds) is masked too.
//!
//! # Cost
//!
//! [`mask_pans`] runs on every log line. Text with fewer than [`PAN_DIGITS_MIN`] ASCII digits
//! returns at once after one count; otherwise each reading is one pass that keeps the last
//! [`PAN_DIGITS_MAX`] digits of the current run in a fixed array and sums at most that many
//! per digit: linear, and without allocating unless something is masked.

use std::borrow::Cow;
use std::ops::ControlFlow;

/// Fewest digits of a card number (ISO/IEC 7812).
pub const PAN_DIGITS_MIN: usize = 13;
/// Most digits of a card number (ISO/IEC 7812).
pub const PAN_DIGITS_MAX: usize = 19;
/// Most separator units between two consecutive digits of a run.
pub const SEPARATORS_MAX: usize = 3;
/// Leading digits a masked card number keeps (the BIN, PCI DSS 3.4.1).
pub const BIN_DIGITS: usize = 6;
/// Trailing digits a masked card number keeps.
pub const LAST_DIGITS: usize = 4;
/// Most backslashes before an escaped separator (`\t`, `\\t`, ...).
pub const ESCAPE_BACKSLASHES_MAX: usize = 4;
/// What a masked digit becomes.
pub const MASK_CHAR: char = '*';
/// Most reads of a text while masking it; beyond, every digit is masked.
pub const MASK_PASSES_MAX: usize = 8;

/// How encodings are read (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reading {
    /// Percent-encoded and escaped separators are separator units.
    Encoded,
    /// Encodings that hold digits (`%XX`, `\u…`) are read as what they are written with.
    Plain,
}

const READINGS: [Reading; 2] = [Reading::Encoded, Reading::Plain];

/// Whether `digits`, ASCII digits, pass the Luhn check (ISO/IEC 7812-1 annex B). False for an
/// empty slice or one holding anything but ASCII digits.
pub fn luhn_valid(digits: &[u8]) -> bool {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| luhn_term(d - b'0', i))
        .sum();
    sum.is_multiple_of(10)
}

/// A digit's share of the Luhn sum, `from_right` places from the check digit (0).
fn luhn_term(digit: u8, from_right: usize) -> u32 {
    let d = u32::from(digit);
    if from_right % 2 == 1 {
        let doubled = d * 2;
        if doubled > 9 { doubled - 9 } else { doubled }
    } else {
        d
    }
}

/// `text` with the middle digits of every card-number-like window (see the module
/// documentation for the rule) replaced by `*`; borrowed, untouched, when there is none.
pub fn mask_pans(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    if !enough_digits(bytes) {
        return Cow::Borrowed(text);
    }
    // Empty vectors do not allocate: nothing is allocated unless something is found.
    let mut middles = Vec::new();
    if !find_middles(bytes, &mut middles) {
        return Cow::Borrowed(text);
    }
    let mut out = bytes.to_vec();
    let mut passes = 1;
    loop {
        for &at in &middles {
            out[at] = b'*';
        }
        middles.clear();
        if !find_middles(&out, &mut middles) {
            break;
        }
        passes += 1;
        if passes >= MASK_PASSES_MAX {
            out.iter_mut()
                .filter(|b| b.is_ascii_digit())
                .for_each(|b| *b = b'*');
            break;
        }
    }
    // Only ASCII digits were replaced, by an ASCII byte: still UTF-8.
    Cow::Owned(
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
    )
}

/// Adds the offsets of the digits to mask in `bytes`, in both readings, to `middles`;
/// whether there were any.
fn find_middles(bytes: &[u8], middles: &mut Vec<usize>) -> bool {
    for reading in READINGS {
        scan(bytes, reading, |middle| {
            middles.extend_from_slice(middle);
            ControlFlow::Continue(())
        });
    }
    !middles.is_empty()
}

/// Whether `text` holds a card-number-like run (see the module documentation for the rule).
pub fn contains_pan(text: &str) -> bool {
    let bytes = text.as_bytes();
    if !enough_digits(bytes) {
        return false;
    }
    let mut found = false;
    for reading in READINGS {
        scan(bytes, reading, |_| {
            found = true;
            ControlFlow::Break(())
        });
    }
    found
}

/// Whether an identifier (an idempotency key, a reference, a metadata key, a request id)
/// holds a card number, by the rule of [`contains_pan`] after the digits of two kinds of
/// token that are not numbers are set aside:
/// - a UUID in its canonical form (8-4-4-4-12 hex digits with dashes, either case): its groups
///   are joined by dashes, so all-digit groups next to each other read as one long run;
/// - a hex token: a maximal run of ASCII letters and digits that holds only hex digits, at
///   least one of them a letter `a`-`f` (`3fa9c01234567890123456b2`, a hash, a random id).
///
/// By [`contains_pan`] alone, 5,829 of a million random 32-hex-digit ids (one in 172) and
/// 7,270 of a million random version-4 UUIDs (one in 138) hold a card-number-like run.
///
/// Identifiers are refused, not masked (masking would make two keys one), so false positives
/// here are refused requests, and this rule trades them for one blind spot: a card number
/// glued to letters that are themselves all hex digits (`cafe4111111111111111`). A card number
/// standing apart (`order-4111111111111111`, `4111 1111 1111 1111`) or glued to other letters
/// (`cust4111111111111111`) is still found. Free text keeps the stricter [`contains_pan`]:
/// there a false positive only masks a few digits.
pub fn identifier_holds_pan(text: &str) -> bool {
    if !enough_digits(text.as_bytes()) {
        return false;
    }
    let mut bytes = text.as_bytes().to_vec();
    blank_uuids(&mut bytes);
    blank_hex_tokens(&mut bytes);
    let blanked = String::from_utf8_lossy(&bytes);
    contains_pan(&blanked)
}

/// What a set-aside digit becomes: a breaker, so it joins no run.
const BLANK: u8 = b'x';

/// Whether `bytes` starts with a canonical UUID.
fn is_uuid(bytes: &[u8]) -> bool {
    const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
    let mut at = 0;
    for (i, len) in GROUPS.iter().enumerate() {
        if i > 0 {
            if bytes.get(at) != Some(&b'-') {
                return false;
            }
            at += 1;
        }
        match bytes.get(at..at + len) {
            Some(group) if group.iter().all(u8::is_ascii_hexdigit) => at += len,
            _ => return false,
        }
    }
    true
}

/// Length of a canonical UUID in bytes.
const UUID_LEN: usize = 36;

fn blank_uuids(bytes: &mut [u8]) {
    let mut at = 0;
    while at + UUID_LEN <= bytes.len() {
        let boundary = at == 0 || !bytes[at - 1].is_ascii_alphanumeric();
        if boundary && is_uuid(&bytes[at..]) {
            bytes[at..at + UUID_LEN]
                .iter_mut()
                .filter(|b| b.is_ascii_digit())
                .for_each(|b| *b = BLANK);
            at += UUID_LEN;
        } else {
            at += 1;
        }
    }
}

fn blank_hex_tokens(bytes: &mut [u8]) {
    let mut start = 0;
    while start < bytes.len() {
        if !bytes[start].is_ascii_alphanumeric() {
            start += 1;
            continue;
        }
        let end = bytes[start..]
            .iter()
            .position(|b| !b.is_ascii_alphanumeric())
            .map_or(bytes.len(), |n| start + n);
        let token = &mut bytes[start..end];
        let hex = token.iter().all(u8::is_ascii_hexdigit);
        let lettered = token.iter().any(u8::is_ascii_alphabetic);
        if hex && lettered {
            token
                .iter_mut()
                .filter(|b| b.is_ascii_digit())
                .for_each(|b| *b = BLANK);
        }
        start = end;
    }
}

/// How [`masked_pan`] shows a card number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskStyle {
    /// The BIN and the last four: `411111******1111`.
    BinAndLastFour,
    /// The last four only: `************1111`.
    LastFour,
}

/// A card number for display: its ASCII digits (anything else in `digits` is dropped), all
/// but the ones `style` keeps as `*`. At most [`BIN_DIGITS`] plus [`LAST_DIGITS`] digits
/// show. A number shorter than [`PAN_DIGITS_MIN`] digits is no card number: it shows its last
/// four only when it has more than eight digits, else none.
pub fn masked_pan(digits: &str, style: MaskStyle) -> String {
    let digits: Vec<char> = digits.chars().filter(char::is_ascii_digit).collect();
    let len = digits.len();
    let (lead, last) = match style {
        MaskStyle::BinAndLastFour if len >= PAN_DIGITS_MIN => (BIN_DIGITS, LAST_DIGITS),
        _ if len > 2 * LAST_DIGITS => (0, LAST_DIGITS),
        _ => (0, 0),
    };
    digits
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            if i < lead || i >= len - last {
                c
            } else {
                MASK_CHAR
            }
        })
        .collect()
}

/// Whether `bytes` holds enough ASCII digits for a card number at all: the fast path for the
/// text (most of it) that cannot hold one.
fn enough_digits(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .filter(|b| b.is_ascii_digit())
        .nth(PAN_DIGITS_MIN - 1)
        .is_some()
}

/// Calls `found` with the byte offsets of the digits to mask (the middle) of every
/// card-number-like window in `reading`, in the order the windows end; stops when it breaks.
fn scan(bytes: &[u8], reading: Reading, mut found: impl FnMut(&[usize]) -> ControlFlow<()>) {
    // The current run's last `PAN_DIGITS_MAX` digits and where they are, by run index modulo
    // `PAN_DIGITS_MAX`.
    let mut digits = [0u8; PAN_DIGITS_MAX];
    let mut offsets = [0usize; PAN_DIGITS_MAX];
    let mut run_len = 0usize;
    // Separator units since the run's last digit; `None` outside a run.
    let mut gap: Option<usize> = None;
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        if byte.is_ascii_digit() {
            if gap.is_none() {
                run_len = 0;
            }
            gap = Some(0);
            digits[run_len % PAN_DIGITS_MAX] = byte - b'0';
            offsets[run_len % PAN_DIGITS_MAX] = at;
            run_len += 1;
            if run_len >= PAN_DIGITS_MIN
                && windows_ending(&digits, &offsets, run_len, &mut found).is_break()
            {
                return;
            }
            at += 1;
        } else if let Some(len) = gap.and_then(|_| separator_len(&bytes[at..], reading)) {
            gap = gap.map(|g| g + 1).filter(|&g| g <= SEPARATORS_MAX);
            at += len;
        } else {
            gap = None;
            at += 1;
        }
    }
}

/// Checks every window that ends at the run's newest digit (run index `run_len - 1`): one Luhn
/// sum grown leftwards, tested at each length from [`PAN_DIGITS_MIN`] to [`PAN_DIGITS_MAX`].
fn windows_ending(
    digits: &[u8; PAN_DIGITS_MAX],
    offsets: &[usize; PAN_DIGITS_MAX],
    run_len: usize,
    found: &mut impl FnMut(&[usize]) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let mut sum = 0u32;
    for from_right in 0..run_len.min(PAN_DIGITS_MAX) {
        let index = run_len - 1 - from_right;
        sum += luhn_term(digits[index % PAN_DIGITS_MAX], from_right);
        let len = from_right + 1;
        let issued = digits[index % PAN_DIGITS_MAX] != 0;
        if len >= PAN_DIGITS_MIN && issued && sum.is_multiple_of(10) {
            let mut middle = [0usize; PAN_DIGITS_MAX];
            let masked = (index + BIN_DIGITS)..(run_len - LAST_DIGITS);
            let count = masked.len();
            for (slot, i) in middle.iter_mut().zip(masked) {
                *slot = offsets[i % PAN_DIGITS_MAX];
            }
            found(&middle[..count])?;
        }
    }
    ControlFlow::Continue(())
}

/// The separator characters, as code points (see the module documentation).
fn is_separator_char(c: u32) -> bool {
    matches!(
        c,
        0x09 | 0x20 | 0x2B | 0x2D | 0x2E | 0x5F | 0xA0 | 0x2009 | 0x202F | 0x2010..=0x2015
    )
}

/// The length in bytes of the separator unit `rest` starts with in `reading`, if it starts
/// with one.
fn separator_len(rest: &[u8], reading: Reading) -> Option<usize> {
    let first = *rest.first()?;
    if first.is_ascii() && is_separator_char(u32::from(first)) {
        return Some(1);
    }
    match first {
        b'%' if reading == Reading::Plain => None,
        b'%' => {
            let byte = hex_value(rest.get(1..3)?)?;
            is_separator_char(byte).then_some(3)
        }
        b'\\' => escaped_separator_len(rest, reading),
        // U+00A0 in UTF-8.
        0xC2 => (rest.get(1) == Some(&0xA0)).then_some(2),
        // U+2009, U+2010 to U+2015, U+202F in UTF-8.
        0xE2 => match rest.get(1..3)? {
            [0x80, 0x89 | 0x90..=0x95 | 0xAF] => Some(3),
            _ => None,
        },
        _ => None,
    }
}

/// The length of an escaped separator (`\t`, `\u00a0`, `\u{2009}`, with up to
/// [`ESCAPE_BACKSLASHES_MAX`] backslashes) at the start of `rest`.
fn escaped_separator_len(rest: &[u8], reading: Reading) -> Option<usize> {
    let slashes = rest
        .iter()
        .take(ESCAPE_BACKSLASHES_MAX)
        .take_while(|&&b| b == b'\\')
        .count();
    let body = rest.get(slashes..)?;
    let (code, len) = match body {
        [b't', ..] => (0x09, 1),
        [b'u', ..] if reading == Reading::Plain => return None,
        [b'u', b'{', more @ ..] => {
            let hex_len = more.iter().take(7).position(|&b| b == b'}')?;
            if hex_len == 0 || hex_len > 6 {
                return None;
            }
            (hex_value(&more[..hex_len])?, 3 + hex_len)
        }
        [b'u', more @ ..] => (hex_value(more.get(..4)?)?, 5),
        _ => return None,
    };
    is_separator_char(code).then_some(slashes + len)
}

/// The value of ASCII hex digits (at most six, so it fits).
fn hex_value(hex: &[u8]) -> Option<u32> {
    hex.iter().try_fold(0u32, |value, &b| {
        let digit = char::from(b).to_digit(16)?;
        Some(value * 16 + digit)
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// `input` masks to `expected` (the same text when nothing is card-number-like).
    #[track_caller]
    fn check(input: &str, expected: &str) {
        let masked = mask_pans(input);
        assert_eq!(masked, expected, "{input:?}");
        assert_eq!(contains_pan(input), input != expected, "{input:?}");
        assert_eq!(matches!(masked, Cow::Borrowed(_)), input == expected);
        assert!(!contains_pan(&masked), "{masked:?}");
        assert_eq!(mask_pans(&masked), masked, "masking twice");
    }

    #[test]
    fn identifiers_set_aside_uuids_and_hex_tokens_only() {
        let refused = [
            "4111111111111111",
            "order-4111111111111111",
            "refund_4111-1111-1111-1111",
            "cust4111111111111111",
            "card-4111111111111111-retry2",
            // A UUID set aside does not hide a card number beside it.
            "123e4567-e89b-12d3-a456-426614174000/4111111111111111",
        ];
        for id in refused {
            assert!(identifier_holds_pan(id), "{id}");
        }
        let taken = [
            // All-digit leading groups joined by dashes: a 16-digit run, Luhn-valid.
            "12345678-1234-4234-a456-426614174000",
            "order:12345678-1234-4234-A456-426614174000",
            // Hex ids with a long digit run inside.
            "vl-3a4111111111111111bc",
            // The blind spot, by design: glued to letters that are all hex digits.
            "4111111111111111abc",
            "4111111111111111fe",
            "deadbeef4111111111111111",
            "order-00000000000000000042",
            "short-1234",
        ];
        for id in taken {
            assert!(!identifier_holds_pan(id), "{id}");
        }
        // The first is card-number-like as free text: the identifier rule is what differs.
        assert!(contains_pan("12345678-1234-4234-a456-426614174000"));
        assert!(contains_pan("vl-3a4111111111111111bc"));
    }

    /// Random hex ids and UUIDs, as clients make idempotency keys: none is refused.
    #[test]
    fn random_ids_are_not_refused() {
        use std::fmt::Write;
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            // xorshift64*
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        for _ in 0..20_000 {
            let (a, b) = (next(), next());
            let mut hex = String::new();
            let _ = write!(hex, "{a:016x}{b:016x}");
            assert!(!identifier_holds_pan(&format!("k-{hex}")), "{hex}");
            let uuid = format!(
                "{}-{}-4{}-a{}-{}",
                &hex[0..8],
                &hex[8..12],
                &hex[13..16],
                &hex[17..20],
                &hex[20..32]
            );
            assert!(!identifier_holds_pan(&uuid), "{uuid}");
        }
    }

    #[test]
    fn brands_plain_spaced_and_dashed() {
        // Visa
        check("4111111111111111", "411111******1111");
        check("4111 1111 1111 1111", "4111 11** **** 1111");
        check("4111-1111-1111-1111", "4111-11**-****-1111");
        check("4012888888881881", "401288******1881");
        check("4222222222222", "422222***2222");
        // Mastercard
        check("5555 5555 5555 4444", "5555 55** **** 4444");
        check("5105-1051-0510-5100", "5105-10**-****-5100");
        check("2223003122003222", "222300******3222");
        // American Express (4-6-5)
        check("378282246310005", "378282*****0005");
        check("3782 822463 10005", "3782 82**** *0005");
        check("3714-496353-98431", "3714-49****-*8431");
        // Discover
        check("6011111111111117", "601111******1117");
        check("6011 0009 9013 9424", "6011 00** **** 9424");
        // JCB
        check("3530111333300000", "353011******0000");
        check("3566-0020-2036-0505", "3566-00**-****-0505");
        // Diners Club (14 digits)
        check("30569309025904", "305693****5904");
        check("3056 930902 5904", "3056 93**** 5904");
        // UnionPay, 16 and 19 digits
        check("6200000000000005", "620000******0005");
        check("6212345678901234569", "621234*********4569");
    }

    #[test]
    fn inside_words_and_longer_runs() {
        check("card4111111111111111end", "card411111******1111end");
        check("ref:4111111111111111;", "ref:411111******1111;");
        check(
            "two 4111111111111111 and 5555555555554444 here",
            "two 411111******1111 and 555555******4444 here",
        );
        // A PAN glued to other digits: every Luhn-valid window counts, overlapping ones
        // mask the union of their middles.
        check("4111111111111111 99", "411111********11 99");
        check("12 4111111111111111", "12 4111********1111");
        check("99994111111111111111", "999941**********1111");
        // Not Luhn-valid as a whole, but a 13-digit window of it is.
        check("4111111111111110", "41111111****1110");
    }

    #[test]
    fn separators() {
        check("4111%201111%201111%201111", "4111%2011**%20****%201111");
        check("4111%2d1111%2D1111%2d1111", "4111%2d11**%2D****%2d1111");
        check(
            "/v1/accounts/4111+1111+1111+1111?x=1",
            "/v1/accounts/4111+11**+****+1111?x=1",
        );
        check("4111 - 1111 - 1111 - 1111", "4111 - 11** - **** - 1111");
        check("4111 _ 1111.1111.1111", "4111 _ 11**.****.1111");
        check("4111\t1111\t1111\t1111", "4111\t11**\t****\t1111");
        // As JSON and `Debug` write them.
        check("4111\\t1111\\t1111\\t1111", "4111\\t11**\\t****\\t1111");
        check(
            "4111\\\\t1111\\\\t1111\\\\t1111",
            "4111\\\\t11**\\\\t****\\\\t1111",
        );
        check(
            "4111\\u{a0}1111\\u{a0}1111\\u{a0}1111",
            "4111\\u{a0}11**\\u{a0}****\\u{a0}1111",
        );
        check(
            "4111\\u00a01111\\u00A01111\\u00a01111",
            "4111\\u00a011**\\u00A0****\\u00a01111",
        );
        check(
            "4111\u{a0}1111\u{a0}1111\u{a0}1111",
            "4111\u{a0}11**\u{a0}****\u{a0}1111",
        );
        check("4111–1111–1111–1111", "4111–11**–****–1111");
        // A literal `%` before a number that starts like an encoding: the plain reading.
        check("%2000000000008", "%200000***0008");
        check("100%2000000000008", "100%20000****0008");
        check("%20000000000%2008", "%200000***00%2008");
        check("10%094111111111111111", "10%094111********1111");
        check(
            "4111\u{2009}1111\u{202f}1111 1111",
            "4111\u{2009}11**\u{202f}**** 1111",
        );
    }

    #[test]
    fn non_matches() {
        // Too short: 12 digits, Luhn-valid or not.
        check("411111111111", "411111111111");
        check("4111 1111 1111", "4111 1111 1111");
        // 13 to 20 digits with no Luhn-valid window.
        check("1111111111111", "1111111111111");
        check("11111111111111111111", "11111111111111111111");
        check("4111111111111113", "4111111111111113");
        // More than three separator units apart: two numbers.
        check("4111  -  1111 1111 1111", "4111  -  1111 1111 1111");
        // Not separators: slash, comma, colon, letters.
        check("4111/1111/1111/1111", "4111/1111/1111/1111");
        check("4111,1111,1111,1111", "4111,1111,1111,1111");
        check("4111:1111:1111:1111", "4111:1111:1111:1111");
        check("4111x1111x1111x1111", "4111x1111x1111x1111");
        // An escape naming something else is no separator; its digits are not card digits.
        check("4111\\u{41}1111 1111 1111", "4111\\u{41}1111 1111 1111");
        check("%2011111111111%20", "%2011111111111%20");
        check(
            "amount 1000, fee 25, ref 12345",
            "amount 1000, fee 25, ref 12345",
        );
        check("", "");
    }

    #[test]
    fn false_positives_are_accepted() {
        // A Luhn-valid order number: masked like any card number.
        check("order 1000000000009", "order 100000***0009");
    }

    #[test]
    fn no_card_number_starts_with_zero() {
        // Thirteen zeros pass the Luhn check, and so do these zero-padded counters.
        check("0000000000000", "0000000000000");
        check("00000000000000000042", "00000000000000000042");
        check("0378282246310005", "0378282*****0005");
        check("0004111111111111111", "000411111******1111");
    }

    #[test]
    fn luhn() {
        for (digits, valid) in [
            ("4111111111111111", true),
            ("4111111111111112", false),
            ("79927398713", true),
            ("0", true),
            ("", false),
            ("4111 1111", false),
            ("411a", false),
        ] {
            assert_eq!(luhn_valid(digits.as_bytes()), valid, "{digits:?}");
        }
    }

    #[test]
    fn masked_pan_styles() {
        use MaskStyle::{BinAndLastFour, LastFour};
        for (digits, style, expected) in [
            ("4111111111111111", BinAndLastFour, "411111******1111"),
            ("4111 1111 1111 1111", BinAndLastFour, "411111******1111"),
            ("4111111111111111", LastFour, "************1111"),
            ("378282246310005", BinAndLastFour, "378282*****0005"),
            ("6212345678901234569", LastFour, "***************4569"),
            ("411111111", BinAndLastFour, "*****1111"),
            ("41111111", BinAndLastFour, "********"),
            ("1234", LastFour, "****"),
            ("", LastFour, ""),
        ] {
            assert_eq!(masked_pan(digits, style), expected, "{digits:?} {style:?}");
        }
    }

    /// A Luhn-valid number of 13 to 19 digits.
    fn pan() -> impl Strategy<Value = String> {
        let first = 1u8..10;
        let rest = proptest::collection::vec(0u8..10, (PAN_DIGITS_MIN - 2)..(PAN_DIGITS_MAX - 1));
        (first, rest).prop_map(|(first, rest)| {
            let body: Vec<u8> = std::iter::once(first).chain(rest).collect();
            let sum: u32 = body
                .iter()
                .rev()
                .enumerate()
                .map(|(i, &d)| luhn_term(d, i + 1))
                .sum();
            let check = (10 - sum % 10) % 10;
            body.iter()
                .map(|d| char::from(b'0' + d))
                .chain(char::from_digit(check, 10))
                .collect()
        })
    }

    /// A separator of zero to three units.
    fn separator() -> impl Strategy<Value = String> {
        let unit = prop_oneof![
            Just(" "),
            Just("-"),
            Just("\t"),
            Just("."),
            Just("%20"),
            Just("%2d"),
            Just("\\t"),
            Just("\\u{a0}"),
            Just("\u{a0}"),
            Just("–"),
        ];
        proptest::collection::vec(unit, 0..=SEPARATORS_MAX).prop_map(|units| units.concat())
    }

    /// A PAN written with random separators between its digits.
    fn written_pan() -> impl Strategy<Value = String> {
        (
            pan(),
            proptest::collection::vec(separator(), PAN_DIGITS_MAX),
        )
            .prop_map(|(pan, separators)| {
                let mut out = String::new();
                for (i, digit) in pan.chars().enumerate() {
                    if i > 0 {
                        out.push_str(&separators[i]);
                    }
                    out.push(digit);
                }
                out
            })
    }

    /// Text made of what the rule cares about: digits, separators, near-separators, letters.
    fn noise() -> impl Strategy<Value = String> {
        "[0-9 \\-.+_%a-fu{}\\\\\t/:,*é–\u{a0}]{0,40}"
    }

    /// Noise and PANs, in turns. Noise never ends with the start of an encoding (`%`, `\`,
    /// `\u`): the one combination the rule leaves out (see the module documentation) needs
    /// that, and `check` cases cover the ones next to it.
    fn laden() -> impl Strategy<Value = String> {
        proptest::collection::vec((noise(), written_pan()), 1..4).prop_map(|parts| {
            let mut text = String::new();
            for (mut noise, pan) in parts {
                if noise.ends_with(['%', '\\', 'u']) {
                    noise.push('x');
                }
                text.push_str(&noise);
                text.push_str(&pan);
            }
            text
        })
    }

    fn properties(text: &str) {
        let masked = mask_pans(text);
        assert!(!contains_pan(&masked), "{text:?} -> {masked:?}");
        assert_eq!(mask_pans(&masked), masked, "{text:?}");
        assert_eq!(masked.chars().count(), text.chars().count());
        assert_eq!(masked.len(), text.len());
        if contains_pan(text) {
            assert!(matches!(masked, Cow::Owned(_)) && masked != text);
        } else {
            assert!(matches!(masked, Cow::Borrowed(t) if t == text));
        }
        // Only digits change, and only into `*`.
        for (a, b) in text.bytes().zip(masked.bytes()) {
            assert!(a == b || (a.is_ascii_digit() && b == b'*'), "{text:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_text(text in any::<String>()) {
            properties(&text);
        }

        #[test]
        fn near_misses(text in noise()) {
            properties(&text);
        }

        #[test]
        fn pan_laden_text(text in laden()) {
            prop_assert!(contains_pan(&text), "{:?}", text);
            properties(&text);
        }

        #[test]
        fn a_lone_pan_keeps_its_bin_and_last_four(pan in pan(), written in written_pan()) {
            let text = format!("x{pan}x");
            let expected = format!("x{}x", masked_pan(&pan, MaskStyle::BinAndLastFour));
            // Every window inside the PAN is masked too; at most more `*`.
            let masked = mask_pans(&text);
            for (a, b) in masked.chars().zip(expected.chars()) {
                prop_assert!(a == b || a == '*', "{} vs {}", masked, expected);
            }
            let digits: String = written.chars().filter(char::is_ascii_digit).collect();
            let masked = mask_pans(&written);
            let kept: String = masked.chars().filter(char::is_ascii_digit).collect();
            prop_assert_eq!(&kept[..BIN_DIGITS], &digits[..BIN_DIGITS]);
        }
    }
}
