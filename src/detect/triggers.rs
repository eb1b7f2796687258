//! Which detectors have a place in a text to start from: for each, a
//! condition every one of its findings meets, so that a text that gives none
//! is left at once. Most strings of a body (names of members and events,
//! currencies, titles, digests, ids) give none, and are told so in one
//! vector pass over their bytes, before they are read as UTF-8.

use super::{Detector, is_word, starts_apart};

/// The fewest digits a card (13), an SSN (9) or a phone number holds: the
/// shortest numbers libphonenumber knows, with their country code, have 6
/// (`+43 1234`); one less, for a margin.
const MIN_NUMBER_DIGITS: usize = 5;

/// The triggers that hold in a text, as bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Triggers(u8);

impl Triggers {
    /// An `@`, or `%40`.
    const EMAIL: u8 = 1;
    /// Where a finding may start (a digit, `+`, `(` or `%2B` that
    /// [`starts_apart`]), a run of digits and separators with at least
    /// [`MIN_NUMBER_DIGITS`] digits: cards, SSNs and phones have that many.
    const NUMBERS: u8 = 1 << 1;
    /// Two capitals and two digits, the first capital apart.
    const IBAN: u8 = 1 << 2;
    /// A digit or a colon outside a single word: `ip` is opt-in, and its
    /// own pass is the test.
    const IP: u8 = 1 << 3;

    /// The trigger without which `detector` finds nothing.
    pub(super) fn needed_by(detector: Detector) -> Triggers {
        Triggers(match detector {
            Detector::Email => Self::EMAIL,
            Detector::Card | Detector::Ssn | Detector::Phone => Self::NUMBERS,
            Detector::Iban => Self::IBAN,
            Detector::Ip => Self::IP,
        })
    }

    /// The triggers any of `detectors` needs.
    pub(super) fn needed_by_any(detectors: &[Detector]) -> Triggers {
        Triggers(
            detectors
                .iter()
                .fold(0, |all, &d| all | Self::needed_by(d).0),
        )
    }

    /// Whether one of `wanted` holds.
    pub(super) fn meet(self, wanted: Triggers) -> bool {
        self.0 & wanted.0 != 0
    }

    pub(super) fn of(text: &[u8]) -> Triggers {
        let kinds = ByteKinds::of(text);
        let one_word = !kinds.has(ByteKinds::NOT_WORD);
        let mut bits = 0;
        if kinds.has(ByteKinds::AT) || (kinds.has(ByteKinds::PERCENT) && escape_in(text, b"40")) {
            bits |= Self::EMAIL;
        }
        // An address has a `.` or a `:`: never one word.
        if !one_word && kinds.has(ByteKinds::DIGIT | ByteKinds::COLON) {
            bits |= Self::IP;
        }
        // A number has five digits, an IBAN two: the search for where one
        // starts is for the few texts with that many.
        if kinds.digits < 2 {
            return Triggers(bits);
        }
        let want_numbers = kinds.digits >= MIN_NUMBER_DIGITS;
        let want_iban = kinds.capitals >= 2;
        let (numbers, iban) = if !(want_numbers || want_iban) {
            (false, false)
        } else if one_word {
            // Only the whole word stands apart: only an unformatted card
            // or IBAN can be found in it, from its first byte.
            (
                want_numbers && text[..MIN_NUMBER_DIGITS].iter().all(u8::is_ascii_digit),
                want_iban && iban_at(text, 0),
            )
        } else {
            starts(text, want_numbers, want_iban)
        };
        if numbers {
            bits |= Self::NUMBERS;
        }
        if iban {
            bits |= Self::IBAN;
        }
        Triggers(bits)
    }
}

/// Which kinds of bytes a text holds, and about how many digits and
/// capitals (exactly, or at least as many as it holds up to 255 of each).
struct ByteKinds {
    bits: u8,
    digits: usize,
    capitals: usize,
}

impl ByteKinds {
    const DIGIT: u8 = 1;
    const AT: u8 = 1 << 1;
    const PERCENT: u8 = 1 << 2;
    const COLON: u8 = 1 << 3;
    const UPPER: u8 = 1 << 4;
    const NOT_WORD: u8 = 1 << 5;
    const LANES: usize = 16;

    /// For each byte: its kinds in bits 16 to 23, and 1 in bits 8 to 15
    /// for a capital, in bits 0 to 7 for a digit. Texts shorter than a
    /// block (most member names and values) look their bytes up here, in
    /// one pass: the kinds of a text are the OR of its bytes' entries, the
    /// counts in their sum (fewer than a block of bytes carries no count
    /// into the next).
    const OF_BYTE: [u32; 256] = {
        let mut table = [0; 256];
        let mut b = 0;
        while b < 256 {
            let kinds = Self::of_byte(b as u8);
            table[b] = (kinds as u32) << 16
                | ((kinds & Self::UPPER != 0) as u32) << 8
                | (kinds & Self::DIGIT != 0) as u32;
            b += 1;
        }
        table
    };

    fn of(text: &[u8]) -> ByteKinds {
        let (blocks, tail) = text.as_chunks::<{ Self::LANES }>();
        if blocks.is_empty() {
            let (kinds, counts) = text.iter().fold((0, 0u32), |(kinds, counts), &b| {
                let entry = Self::OF_BYTE[usize::from(b)];
                (kinds | entry, counts + entry)
            });
            return ByteKinds {
                bits: (kinds >> 16) as u8,
                digits: (counts & 0xff) as usize,
                capitals: (counts >> 8 & 0xff) as usize,
            };
        }
        // A block at a time, in vector code; the tail as the last block of
        // the text, which overlaps the one before it (its bytes counted
        // twice: the counts are upper bounds, safe for the tests that use them).
        let mut lanes = Lanes::default();
        for block in blocks {
            lanes.add(block);
        }
        if !tail.is_empty() {
            lanes.add(
                text.last_chunk::<{ Self::LANES }>()
                    .expect("a block or more"),
            );
        }
        let kinds = u128::from_ne_bytes(lanes.kinds);
        let kinds = kinds | kinds >> 64;
        let kinds = kinds | kinds >> 32;
        let kinds = kinds | kinds >> 16;
        let sum = |counts: [u8; Self::LANES]| counts.iter().map(|&c| usize::from(c)).sum();
        ByteKinds {
            bits: (kinds | kinds >> 8) as u8,
            digits: sum(lanes.digits),
            capitals: sum(lanes.capitals),
        }
    }

    #[inline(always)]
    const fn of_byte(b: u8) -> u8 {
        let digit = b.wrapping_sub(b'0') < 10;
        let upper = b.wrapping_sub(b'A') < 26;
        let lower = b.wrapping_sub(b'a') < 26;
        let word = digit | upper | lower | (b >= 0x80);
        // `kind` when `holds`, without a branch.
        const fn bit(holds: bool, kind: u8) -> u8 {
            (holds as u8) * kind
        }
        bit(digit, Self::DIGIT)
            | bit(b == b'@', Self::AT)
            | bit(b == b'%', Self::PERCENT)
            | bit(b == b':', Self::COLON)
            | bit(upper, Self::UPPER)
            | bit(!word, Self::NOT_WORD)
    }

    fn has(&self, kinds: u8) -> bool {
        self.bits & kinds != 0
    }
}

/// The kinds of the bytes seen so far, and how many digits and capitals,
/// lane by lane (a count stops at 255).
#[derive(Default)]
struct Lanes {
    kinds: [u8; ByteKinds::LANES],
    digits: [u8; ByteKinds::LANES],
    capitals: [u8; ByteKinds::LANES],
}

impl Lanes {
    /// Branch-free, so that the compiler makes vector code of it.
    #[inline(always)]
    fn add(&mut self, block: &[u8; ByteKinds::LANES]) {
        let lanes = self
            .kinds
            .iter_mut()
            .zip(self.digits.iter_mut())
            .zip(self.capitals.iter_mut());
        for (((kinds, digits), capitals), &b) in lanes.zip(block) {
            let kind = ByteKinds::of_byte(b);
            *kinds |= kind;
            *digits = digits.saturating_add(u8::from(kind & ByteKinds::DIGIT != 0));
            *capitals = capitals.saturating_add(u8::from(kind & ByteKinds::UPPER != 0));
        }
    }
}

fn may_start_number(b: u8) -> bool {
    b.is_ascii_digit() || matches!(b, b'+' | b'(' | b'%')
}

/// Whether a number [`Triggers::NUMBERS`] counts starts at `at`.
fn number_at(text: &[u8], at: usize) -> bool {
    may_start_number(text[at])
        && starts_apart(text, at)
        && number_digits_from(text, at) >= MIN_NUMBER_DIGITS
}

/// Whether an IBAN may start at `at`: two capitals, two digits, and no
/// word byte before (looser than [`starts_apart`], which a joiner fails).
fn iban_at(text: &[u8], at: usize) -> bool {
    text.get(at..at + 4).is_some_and(|w| {
        w[0].is_ascii_uppercase()
            && w[1].is_ascii_uppercase()
            && w[2].is_ascii_digit()
            && w[3].is_ascii_digit()
    }) && (at == 0 || !is_word(text[at - 1]))
}

/// Whether a number and an IBAN (each when wanted) start somewhere in
/// `text`, which is not one word. The places where either may start are
/// told a block at a time, in vector code, from the two bytes before each
/// and the three after; only the places a number may start at are looked
/// at further. A short text (most ids) is copied between zeros, which
/// stand apart and open nothing, so that it takes one or two blocks.
/// Out of line: few texts come this far.
#[inline(never)]
fn starts(text: &[u8], want_numbers: bool, want_iban: bool) -> (bool, bool) {
    const LANES: usize = Places::LANES;
    const SHORT: usize = 2 * LANES;
    let mut found = Starts {
        text,
        want_numbers,
        want_iban,
        numbers: false,
        iban: false,
    };
    if text.len() <= SHORT {
        let mut padded = [0; Places::BEFORE + SHORT + Places::AFTER];
        padded[Places::BEFORE..][..text.len()].copy_from_slice(text);
        found.look(&padded, Places::BEFORE, Places::BEFORE);
        if text.len() > LANES {
            found.look(&padded, Places::BEFORE + LANES, Places::BEFORE);
        }
        return (found.numbers, found.iban);
    }
    // Nothing that may start in the last three bytes is wanted (an IBAN
    // has four, a number five digits); the first two have no two before.
    let ends = text.len() - Places::AFTER;
    for at in 0..Places::BEFORE {
        found.numbers |= want_numbers && number_at(text, at);
        found.iban |= want_iban && iban_at(text, at);
    }
    let mut at = Places::BEFORE;
    while at < ends && !found.done() {
        // The last block overlaps the one before it.
        let block = at.min(ends - LANES);
        found.look(text, block, 0);
        at = block + LANES;
    }
    (found.numbers, found.iban)
}

/// What [`starts`] has found so far.
struct Starts<'t> {
    text: &'t [u8],
    want_numbers: bool,
    want_iban: bool,
    numbers: bool,
    iban: bool,
}

impl Starts<'_> {
    fn done(&self) -> bool {
        (self.numbers || !self.want_numbers) && (self.iban || !self.want_iban)
    }

    /// Looks at the block of places from `at` of `bytes`, which holds the
    /// text from `offset`.
    fn look(&mut self, bytes: &[u8], at: usize, offset: usize) {
        let places = Places::of(bytes, at);
        self.iban |= self.want_iban && places.iban;
        if self.want_numbers && !self.numbers {
            let mut lanes = places.number_starts;
            while lanes != 0 && !self.numbers {
                let lane = (lanes.trailing_zeros() / 8) as usize;
                lanes &= lanes - 1;
                self.numbers = number_at(self.text, at + lane - offset);
            }
        }
    }
}

/// For a block of places in a text: those a number may start at (a byte
/// that opens one, standing apart), and whether an IBAN may start at one
/// (two capitals then two digits, the first capital apart).
struct Places {
    /// A byte per place, in order: 1 where a number may start, else 0.
    number_starts: u128,
    iban: bool,
}

impl Places {
    const LANES: usize = ByteKinds::LANES;
    /// How many bytes before a place and after it tell what it is.
    const BEFORE: usize = 2;
    const AFTER: usize = 3;

    /// Lane by lane over arrays, without branches, so that the compiler
    /// makes vector code of it. `bytes` holds the two bytes before `at`
    /// and the `LANES + 3` from it.
    #[inline(always)]
    fn of(bytes: &[u8], at: usize) -> Places {
        const LANES: usize = Places::LANES;
        let lanes = |shift: usize| -> &[u8; LANES] {
            bytes[at + shift - Places::BEFORE..]
                .first_chunk::<LANES>()
                .expect("the caller leaves room")
        };
        let (before2, before, here) = (lanes(0), lanes(1), lanes(2));
        let (next, third, fourth) = (lanes(3), lanes(4), lanes(5));
        let digit = |b: u8| b.wrapping_sub(b'0') < 10;
        let upper = |b: u8| b.wrapping_sub(b'A') < 26;
        let word = |b: u8| digit(b) | ((b | 0x20).wrapping_sub(b'a') < 26) | (b >= 0x80);
        let joiner = |b: u8| (b == b'-') | (b == b'_') | (b == b'.') | (b == b'/');
        let mut starts = [0u8; LANES];
        for (((start, &b), &before), &before2) in
            starts.iter_mut().zip(here).zip(before).zip(before2)
        {
            let opens = digit(b) | (b == b'+') | (b == b'(') | (b == b'%');
            let apart = !word(before) & !(joiner(before) & word(before2));
            *start = u8::from(opens & apart);
        }
        let mut ibans = [0u8; LANES];
        for (((((iban, &b), &next), &third), &fourth), &before) in ibans
            .iter_mut()
            .zip(here)
            .zip(next)
            .zip(third)
            .zip(fourth)
            .zip(before)
        {
            *iban = u8::from(upper(b) & upper(next) & digit(third) & digit(fourth) & !word(before));
        }
        Places {
            number_starts: u128::from_le_bytes(starts),
            iban: u128::from_le_bytes(ibans) != 0,
        }
    }
}

/// Whether `text` holds `%` followed by `hex` (either case).
pub(super) fn escape_in(text: &[u8], hex: &[u8; 2]) -> bool {
    memchr::memchr_iter(b'%', text).any(|at| {
        text.get(at + 1..at + 3)
            .is_some_and(|escape| escape.eq_ignore_ascii_case(hex))
    })
}

/// How many digits the run of digits and separators (` -.()`) starting at
/// `at` holds; a `+` or `%2B` (a phone's) opens it. A place that opens no
/// run holds none.
fn number_digits_from(text: &[u8], at: usize) -> usize {
    let from = match text[at] {
        b'+' => at + 1,
        b'%' if text
            .get(at + 1..at + 3)
            .is_some_and(|e| e.eq_ignore_ascii_case(b"2B")) =>
        {
            at + 3
        }
        b'%' => return 0,
        _ => at,
    };
    let mut digits = 0;
    for &b in &text[from.min(text.len())..] {
        if b.is_ascii_digit() {
            digits += 1;
            if digits >= MIN_NUMBER_DIGITS {
                break;
            }
        } else if !matches!(b, b' ' | b'-' | b'.' | b'(' | b')') {
            break;
        }
    }
    digits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{email, numbers, phone};

    use proptest::strategy::Strategy;

    #[test]
    fn byte_kinds_count_digits_and_see_every_kind_in_blocks_and_tails() {
        for len in [0, 1, 15, 16, 17, 40] {
            let text = vec![b'x'; len];
            let kinds = ByteKinds::of(&text);
            assert_eq!((kinds.bits, kinds.digits), (0, 0), "{len}");
            for (at, byte, kind) in [
                (len / 2, b'7', ByteKinds::DIGIT),
                (
                    len.saturating_sub(1),
                    b'@',
                    ByteKinds::AT | ByteKinds::NOT_WORD,
                ),
                (0, b'%', ByteKinds::PERCENT | ByteKinds::NOT_WORD),
                (len / 3, b':', ByteKinds::COLON | ByteKinds::NOT_WORD),
                (len / 4, b'Q', ByteKinds::UPPER),
                (len / 5, b' ', ByteKinds::NOT_WORD),
            ] {
                if len == 0 {
                    continue;
                }
                let mut text = text.clone();
                text[at] = byte;
                assert_eq!(ByteKinds::of(&text).bits, kind, "{len} {}", byte as char);
            }
        }
        // Counted exactly, or at least (the last block overlaps).
        assert_eq!(ByteKinds::of("1".repeat(320).as_bytes()).digits, 320);
        assert!((600..=616).contains(&ByteKinds::of("1".repeat(600).as_bytes()).digits));
        assert_eq!(ByteKinds::of(b"a1b2c3d").digits, 3);
        let short = ByteKinds::of("ÉA-12 Bé9".as_bytes());
        assert_eq!((short.digits, short.capitals), (3, 2));
        let longest_short = ByteKinds::of(b"QQQQQQQ99999999");
        assert_eq!((longest_short.digits, longest_short.capitals), (8, 7));
        let capitals = ByteKinds::of(b"GB82 west 1234 5698 7654 32");
        assert!(capitals.capitals >= 2 && (16..=32).contains(&capitals.digits));
        assert_eq!(ByteKinds::of(b"Sourdough loaf, 800 g").capitals, 1);
        for b in 0..=255u8 {
            let is_word = b.is_ascii_alphanumeric() || b >= 0x80;
            assert_eq!(
                ByteKinds::of_byte(b) & ByteKinds::NOT_WORD == 0,
                is_word,
                "{b}"
            );
        }
        assert!(!ByteKinds::of("zoë".as_bytes()).has(ByteKinds::NOT_WORD));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

        /// The blocks tell the places a number or an IBAN starts as the
        /// byte-by-byte definition does, at every length and position.
        #[test]
        fn blocks_find_the_starts_each_place_gives(
            pieces in proptest::collection::vec(
                proptest::prop_oneof!["[0-9]{1,6}", "[ +().%\\-_/]{1,2}", "[A-Z]{1,3}", "[a-zé]{1,4}"],
                0..24,
            )
        ) {
            let text = pieces.concat();
            let text = text.as_bytes();
            let numbers = (0..text.len()).any(|at| number_at(text, at));
            let iban = (0..text.len()).any(|at| iban_at(text, at));
            for (want_numbers, want_iban) in [(true, true), (true, false), (false, true)] {
                let (found_numbers, found_iban) = starts(text, want_numbers, want_iban);
                proptest::prop_assert_eq!(found_numbers, want_numbers && numbers);
                proptest::prop_assert_eq!(found_iban, want_iban && iban);
            }
        }

        /// The triggers are a filter only: wherever a detector, run on its
        /// own, finds something, its trigger holds.
        #[test]
        fn a_trigger_holds_wherever_its_detector_finds(
            pieces in proptest::collection::vec(
                proptest::prop_oneof![
                    "[0-9]{1,16}",
                    "[ +().\\-/@%:_]{1,3}",
                    "[a-zA-Z]{1,6}",
                    proptest::sample::select(vec![
                        "jane.doe@example.com", "jane%40example.com", "+1 415 555 2671",
                        "4111 1111 1111 1111", "4111-1111-1111-1111", "DE89 3704 0044 0532 0130 00",
                        "078-05-1120", "(212) 555-0143", "%2B14155552671", "+43 1 1234",
                        "+290 2222", "2001:db8::1", "192.0.2.1", "GB82WEST12345698765432",
                    ]).prop_map(str::to_owned),
                ],
                0..10,
            )
        ) {
            let text: String = pieces.concat();
            let triggers = Triggers::of(text.as_bytes());
            let region = Some(phonenumber::country::Id::US);
            let lengths = phone::national_lengths(region);
            for detector in Detector::ALL {
                let mut found = Vec::new();
                match detector {
                    Detector::Email => email::find(&text, &mut found),
                    Detector::Phone => phone::find(&text, region, lengths, &mut found),
                    Detector::Card => numbers::find_cards(&text, &mut found),
                    Detector::Iban => numbers::find_ibans(&text, &mut found),
                    Detector::Ssn => numbers::find_ssns(&text, &mut found),
                    Detector::Ip => numbers::find_ips(&text, &mut found),
                }
                proptest::prop_assert!(
                    found.is_empty() || triggers.meet(Triggers::needed_by(detector)),
                    "{} finds {:?} in {text:?}, but its trigger does not hold",
                    detector.as_str(),
                    found
                );
            }
        }
    }
}
