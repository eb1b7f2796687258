//! The lexer's states: where in a token the scanner stopped, so that a
//! token cut by the end of a chunk needs no re-scan.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Lex {
    /// Before a document: whitespace, then its value.
    Start,
    /// Inside a leading UTF-8 byte order mark (bytes matched so far).
    Bom(u8),
    /// After `[`.
    FirstElementOrEnd,
    /// After `,` in an array.
    Element,
    /// After `{`.
    FirstKeyOrEnd,
    /// After `,` in an object.
    Key,
    /// After a member name.
    Colon,
    /// After `:`.
    MemberValue,
    /// After a value inside a container.
    Comma,
    /// After the document's value.
    End,
    Str,
    Escape,
    Hex {
        left: u8,
        code: u16,
        low: bool,
    },
    LowSurrogateBackslash,
    LowSurrogateU,
    Number(Num),
    Literal {
        word: &'static [u8],
        at: u8,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Num {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    Exp,
    ExpSign,
    ExpDigits,
}

impl Num {
    pub(super) fn next(self, b: u8) -> Option<Num> {
        match (self, b) {
            (Num::Minus, b'0') => Some(Num::Zero),
            (Num::Minus, b'1'..=b'9') => Some(Num::Int),
            (Num::Int, b'0'..=b'9') => Some(Num::Int),
            (Num::Zero | Num::Int, b'.') => Some(Num::Dot),
            (Num::Dot | Num::Frac, b'0'..=b'9') => Some(Num::Frac),
            (Num::Zero | Num::Int | Num::Frac, b'e' | b'E') => Some(Num::Exp),
            (Num::Exp, b'+' | b'-') => Some(Num::ExpSign),
            (Num::Exp | Num::ExpSign | Num::ExpDigits, b'0'..=b'9') => Some(Num::ExpDigits),
            _ => None,
        }
    }

    pub(super) fn complete(self) -> bool {
        matches!(self, Num::Zero | Num::Int | Num::Frac | Num::ExpDigits)
    }
}

pub(super) const WHITESPACE: [bool; 256] = {
    let mut table = [false; 256];
    table[b' ' as usize] = true;
    table[b'\t' as usize] = true;
    table[b'\n' as usize] = true;
    table[b'\r' as usize] = true;
    table
};
