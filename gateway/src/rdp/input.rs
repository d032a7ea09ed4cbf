//! RDP client input → transcript input.
//!
//! The admin's RDP client reports what it types and clicks in fast-path input frames
//! ([MS-RDPBCGR] 2.2.8.1.2) or in slow-path Input PDUs ([MS-RDPBCGR] 2.2.8.1.1.3).
//! [`InputDecoder`] turns either into protocol-neutral [`Input`] events, named the way the VNC
//! gateway names X11 keysyms (see [`psmgate_codecs::transcript::keysym`]) so that VNC and RDP
//! transcripts read alike.
//!
//! # Keyboard
//!
//! RDP clients mostly send *scancodes* (positions on the keyboard), not characters. What a
//! scancode types depends on the client's keyboard layout (announced in the GCC Client Core
//! Data) and on the modifier and lock state, which the decoder tracks from the key events
//! themselves and from Synchronize events:
//!
//! - US English (`0x409`) is mapped in full: letters, digits row, punctuation, keypad (with Num
//!   Lock), function and navigation keys, extended (`E0`) keys and Pause (`E1`).
//! - German (`0x407`, also Austrian `0xC07`), UK English (`0x809`) and French (`0x40C`) are
//!   overlays of the keys that differ from US, including AltGr (right Alt, or Ctrl+Alt) levels
//!   such as German AltGr+Q = `@` and dead keys (German `^`, `´`, `` ` ``; French `^`, `¨`,
//!   AltGr `~` and `` ` ``). A dead key followed by a letter it combines with yields the
//!   combined character (`^` `e` → `ê`), followed by space the accent itself; followed by any
//!   other character, that character alone (the accent is not recorded).
//! - Any other layout is named as US, but a character is recorded only where it does not depend
//!   on the layout's details: space, Enter, Tab, the keypad digits and operators, and letters
//!   for layouts of Latin-script languages (with the `y`/`z` swap of QWERTZ and the `a`/`q`,
//!   `z`/`w`, `m` moves of AZERTY languages). No letters are recorded for other scripts
//!   (Cyrillic, Greek, CJK, …), Turkish, or layout variants (a non-zero high word, e.g. US
//!   Dvorak `0x10409`). The digits row and punctuation never get a character on such layouts.
//! - While Ctrl, Alt or the Windows key is held (and AltGr is not in effect) a key types nothing:
//!   its name is recorded, its character is not, so shortcuts (Ctrl+C) do not enter the typed
//!   text.
//!
//! Unicode keyboard events carry the character itself and are recorded as that character
//! (surrogate pairs are joined).
//!
//! # Pointer
//!
//! Absolute pointer moves are recorded as [`Input::Pointer`] only when the position changed
//! since the last one recorded; buttons 1–3 are left, middle, right, 8 and 9 the X1/X2 buttons.
//! Wheel rotation arrives in units of 120 per notch; partial rotations are accumulated so that
//! three events of 40 make one [`Input::Wheel`] step (positive `dy` = towards the user, i.e.
//! scrolling down; positive `dx` = right). Relative pointer events move the last absolute
//! position, if one is known.
//!
//! # Held keys and buttons
//!
//! The decoder knows which keys and mouse buttons the client holds down;
//! [`InputDecoder::releases`] gives the events that release them all, and [`encode_fast_path`]
//! or [`encode_slow_path`] the frames that carry them. psmgate sends those when an operator
//! locks a session, so that nothing stays held down on the target while the client's input is
//! held back (see `crate::live::LockRequest`).

use std::collections::HashMap;

use ironrdp_pdu::input::fast_path::{
    FastPathInput, FastPathInputEvent, KeyboardFlags as FastPathKeyFlags, SynchronizeFlags,
};
use ironrdp_pdu::input::mouse::PointerFlags;
use ironrdp_pdu::input::mouse_rel::PointerRelFlags;
use ironrdp_pdu::input::mouse_x::PointerXFlags;
use ironrdp_pdu::input::scan_code::KeyboardFlags as ScanCodeFlags;
use ironrdp_pdu::input::sync::SyncToggleFlags;
use ironrdp_pdu::input::unicode::KeyboardFlags as UnicodeFlags;
use ironrdp_pdu::input::{
    InputEvent, InputEventPdu, MousePdu, MouseRelPdu, MouseXPdu, ScanCodePdu, SyncPdu, UnicodePdu,
};
use ironrdp_pdu::mcs::SendDataRequest;
use ironrdp_pdu::rdp::client_info::CompressionType;
use ironrdp_pdu::rdp::headers::{
    CompressionFlags, ShareControlHeader, ShareControlPdu, ShareDataHeader, ShareDataPdu,
    StreamPriority,
};
use ironrdp_pdu::x224::X224;
use psmgate_codecs::transcript::{keysym, Input};

/// Wheel rotation units per notch ([MS-RDPBCGR] 2.2.8.1.1.3.1.1.3).
const WHEEL_DELTA: i32 = 120;

/// The mouse buttons the decoder tracks, numbered as in [`Input::Button`].
const BUTTONS: [u8; 5] = [1, 2, 3, 8, 9];

/// Share Control PDU type of a Data PDU (`PDUTYPE_DATAPDU`).
const PDUTYPE_DATAPDU: u16 = 0x7;
/// Share Data PDU type of an Input PDU (`PDUTYPE2_INPUT`).
const PDUTYPE2_INPUT: u8 = 0x1C;
/// Share Data header flag: the body is bulk-compressed (`PACKET_COMPRESSED`).
const PACKET_COMPRESSED: u8 = 0x20;
/// MCS DomainMCSPDU choice of a Send Data Request.
const MCS_SEND_DATA_REQUEST: u8 = 25;
/// X.224 Data TPDU code.
const X224_DATA: u8 = 0xF0;

/// An input frame that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// The frame has no bytes.
    #[error("empty input frame")]
    Empty,
    /// The first byte does not announce a fast-path frame (action bits not zero).
    #[error("not a fast-path input frame (header byte {0:#04x})")]
    NotFastPath(u8),
    /// The fast-path frame is encrypted with Standard RDP Security, which psmgate does not read.
    #[error("fast-path input is encrypted (header byte {0:#04x})")]
    Encrypted(u8),
    /// A length field disagrees with the bytes of the frame.
    #[error("input frame declares {declared} bytes but has {actual}")]
    Length {
        /// Length the frame's header declares.
        declared: usize,
        /// Length of the frame as given.
        actual: usize,
    },
    /// A slow-path Input PDU with bulk compression (psmgate does not negotiate compression).
    #[error("compressed slow-path input PDU")]
    Compressed,
    /// A structure inside the frame could not be decoded.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// The decoder's explanation.
        detail: String,
    },
    /// Input psmgate writes itself could not be encoded.
    #[error("encoding input events: {0}")]
    Encode(String),
}

fn malformed(what: &'static str) -> impl FnOnce(ironrdp_core::DecodeError) -> InputError {
    move |e| InputError::Malformed {
        what,
        detail: e.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Keyboard layouts
// ---------------------------------------------------------------------------------------------

/// Accent of a dead key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Accent {
    Grave,
    Acute,
    Circumflex,
    Tilde,
    Diaeresis,
}

impl Accent {
    fn name(self) -> &'static str {
        match self {
            Accent::Grave => "dead_grave",
            Accent::Acute => "dead_acute",
            Accent::Circumflex => "dead_circumflex",
            Accent::Tilde => "dead_tilde",
            Accent::Diaeresis => "dead_diaeresis",
        }
    }

    /// The accent typed on its own (dead key, then space).
    fn spacing(self) -> char {
        match self {
            Accent::Grave => '`',
            Accent::Acute => '´',
            Accent::Circumflex => '^',
            Accent::Tilde => '~',
            Accent::Diaeresis => '¨',
        }
    }

    /// The accent combined with a base character, if such a character exists.
    fn compose(self, c: char) -> Option<char> {
        let (lower, upper): (&str, &str) = match self {
            Accent::Grave => ("àèìòù", "ÀÈÌÒÙ"),
            Accent::Acute => ("áéíóúý", "ÁÉÍÓÚÝ"),
            Accent::Circumflex => ("âêîôû", "ÂÊÎÔÛ"),
            Accent::Tilde => ("ãñõ", "ÃÑÕ"),
            Accent::Diaeresis => ("äëïöüÿ", "ÄËÏÖÜŸ"),
        };
        let bases: &str = match self {
            Accent::Grave => "aeiou",
            Accent::Acute => "aeiouy",
            Accent::Circumflex => "aeiou",
            Accent::Tilde => "ano",
            Accent::Diaeresis => "aeiouy",
        };
        if c == ' ' {
            return Some(self.spacing());
        }
        let (table, base) = if c.is_ascii_uppercase() {
            (upper, c.to_ascii_lowercase())
        } else {
            (lower, c)
        };
        let idx = bases.chars().position(|b| b == base)?;
        table.chars().nth(idx)
    }
}

/// What one shift level of a key produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sym {
    /// Nothing.
    Void,
    /// A character.
    Ch(char),
    /// A dead key.
    Dead(Accent),
}

impl Sym {
    fn name(self) -> String {
        match self {
            Sym::Void => "VoidSymbol".to_string(),
            Sym::Ch(c) => char_name(c),
            Sym::Dead(a) => a.name().to_string(),
        }
    }
}

/// A character-producing key of a layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CharKey {
    base: Sym,
    shift: Sym,
    altgr: Sym,
    /// Caps Lock acts as Shift on this key.
    caps: bool,
}

impl CharKey {
    const fn with_altgr(mut self, c: char) -> Self {
        self.altgr = Sym::Ch(c);
        self
    }

    const fn with_altgr_dead(mut self, a: Accent) -> Self {
        self.altgr = Sym::Dead(a);
        self
    }

    const fn with_caps(mut self) -> Self {
        self.caps = true;
        self
    }
}

/// A key with two characters, unaffected by Caps Lock.
const fn k(base: char, shift: char) -> CharKey {
    CharKey {
        base: Sym::Ch(base),
        shift: Sym::Ch(shift),
        altgr: Sym::Void,
        caps: false,
    }
}

/// A letter key: Caps Lock acts as Shift.
const fn letter(lower: char, upper: char) -> CharKey {
    CharKey {
        base: Sym::Ch(lower),
        shift: Sym::Ch(upper),
        altgr: Sym::Void,
        caps: true,
    }
}

/// An ASCII letter key.
const fn ascii(c: char) -> CharKey {
    letter(c, c.to_ascii_uppercase())
}

/// A key whose levels are arbitrary symbols.
const fn syms(base: Sym, shift: Sym) -> CharKey {
    CharKey {
        base,
        shift,
        altgr: Sym::Void,
        caps: false,
    }
}

/// The ASCII letter at a scancode on a QWERTY keyboard.
fn qwerty_letter(sc: u16) -> Option<char> {
    const ROW_Q: &[u8; 10] = b"qwertyuiop";
    const ROW_A: &[u8; 9] = b"asdfghjkl";
    const ROW_Z: &[u8; 7] = b"zxcvbnm";
    let idx = |start: u16| usize::from(sc.wrapping_sub(start));
    let b = match sc {
        0x10..=0x19 => ROW_Q.get(idx(0x10)),
        0x1E..=0x26 => ROW_A.get(idx(0x1E)),
        0x2C..=0x32 => ROW_Z.get(idx(0x2C)),
        _ => None,
    }?;
    Some(char::from(*b))
}

/// US English (0x409) character keys.
fn us_key(sc: u16) -> Option<CharKey> {
    if let Some(c) = qwerty_letter(sc) {
        return Some(ascii(c));
    }
    Some(match sc {
        0x02 => k('1', '!'),
        0x03 => k('2', '@'),
        0x04 => k('3', '#'),
        0x05 => k('4', '$'),
        0x06 => k('5', '%'),
        0x07 => k('6', '^'),
        0x08 => k('7', '&'),
        0x09 => k('8', '*'),
        0x0A => k('9', '('),
        0x0B => k('0', ')'),
        0x0C => k('-', '_'),
        0x0D => k('=', '+'),
        0x1A => k('[', '{'),
        0x1B => k(']', '}'),
        0x27 => k(';', ':'),
        0x28 => k('\'', '"'),
        0x29 => k('`', '~'),
        0x2B => k('\\', '|'),
        0x33 => k(',', '<'),
        0x34 => k('.', '>'),
        0x35 => k('/', '?'),
        0x39 => k(' ', ' '),
        0x56 => k('\\', '|'),
        _ => return None,
    })
}

/// German (0x407) keys that differ from US.
fn de_key(sc: u16) -> Option<CharKey> {
    Some(match sc {
        0x29 => syms(Sym::Dead(Accent::Circumflex), Sym::Ch('°')),
        0x03 => k('2', '"').with_altgr('²'),
        0x04 => k('3', '§').with_altgr('³'),
        0x07 => k('6', '&'),
        0x08 => k('7', '/').with_altgr('{'),
        0x09 => k('8', '(').with_altgr('['),
        0x0A => k('9', ')').with_altgr(']'),
        0x0B => k('0', '=').with_altgr('}'),
        0x0C => k('ß', '?').with_altgr('\\'),
        0x0D => syms(Sym::Dead(Accent::Acute), Sym::Dead(Accent::Grave)),
        0x10 => ascii('q').with_altgr('@'),
        0x12 => ascii('e').with_altgr('€'),
        0x15 => ascii('z'),
        0x1A => letter('ü', 'Ü'),
        0x1B => k('+', '*').with_altgr('~'),
        0x27 => letter('ö', 'Ö'),
        0x28 => letter('ä', 'Ä'),
        0x2B => k('#', '\''),
        0x2C => ascii('y'),
        0x32 => ascii('m').with_altgr('µ'),
        0x33 => k(',', ';'),
        0x34 => k('.', ':'),
        0x35 => k('-', '_'),
        0x56 => k('<', '>').with_altgr('|'),
        _ => return None,
    })
}

/// UK English (0x809) keys that differ from US.
fn uk_key(sc: u16) -> Option<CharKey> {
    Some(match sc {
        0x03 => k('2', '"'),
        0x04 => k('3', '£'),
        0x05 => k('4', '$').with_altgr('€'),
        0x12 => ascii('e').with_altgr('é'),
        0x16 => ascii('u').with_altgr('ú'),
        0x17 => ascii('i').with_altgr('í'),
        0x18 => ascii('o').with_altgr('ó'),
        0x1E => ascii('a').with_altgr('á'),
        0x28 => k('\'', '@'),
        0x29 => k('`', '¬').with_altgr('¦'),
        0x2B => k('#', '~'),
        0x56 => k('\\', '|'),
        _ => return None,
    })
}

/// French (0x40C) keys that differ from US. Caps Lock acts as Shift on the digits row, as in
/// the Windows French layout.
fn fr_key(sc: u16) -> Option<CharKey> {
    Some(match sc {
        0x02 => k('&', '1').with_caps(),
        0x03 => k('é', '2').with_caps().with_altgr_dead(Accent::Tilde),
        0x04 => k('"', '3').with_caps().with_altgr('#'),
        0x05 => k('\'', '4').with_caps().with_altgr('{'),
        0x06 => k('(', '5').with_caps().with_altgr('['),
        0x07 => k('-', '6').with_caps().with_altgr('|'),
        0x08 => k('è', '7').with_caps().with_altgr_dead(Accent::Grave),
        0x09 => k('_', '8').with_caps().with_altgr('\\'),
        0x0A => k('ç', '9').with_caps().with_altgr('^'),
        0x0B => k('à', '0').with_caps().with_altgr('@'),
        0x0C => k(')', '°').with_altgr(']'),
        0x0D => k('=', '+').with_altgr('}'),
        0x10 => ascii('a'),
        0x11 => ascii('z'),
        0x12 => ascii('e').with_altgr('€'),
        0x1A => syms(Sym::Dead(Accent::Circumflex), Sym::Dead(Accent::Diaeresis)),
        0x1B => k('$', '£').with_altgr('¤'),
        0x1E => ascii('q'),
        0x27 => ascii('m'),
        0x28 => k('ù', '%'),
        0x29 => syms(Sym::Ch('²'), Sym::Void),
        0x2B => k('*', 'µ'),
        0x2C => ascii('w'),
        0x32 => k(',', '?'),
        0x33 => k(';', '.'),
        0x34 => k(':', '/'),
        0x35 => k('!', '§'),
        0x56 => k('<', '>'),
        _ => return None,
    })
}

/// Letter arrangement of a layout psmgate has no table for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Letters {
    Qwerty,
    Qwertz,
    Azerty,
    /// Letters are not recorded.
    Unknown,
}

impl Letters {
    /// The family of a Windows language id (the low word of a keyboard layout id).
    fn of_language(langid: u16) -> Self {
        let primary = langid & 0x3FF;
        match (primary, langid) {
            // French: Canada is QWERTY, Switzerland QWERTZ, the rest AZERTY.
            (0x0C, 0x0C0C) => Letters::Qwerty,
            (0x0C, 0x100C) => Letters::Qwertz,
            (0x0C, _) => Letters::Azerty,
            // Dutch (Belgium) uses the Belgian AZERTY layout.
            (0x13, 0x0813) => Letters::Azerty,
            // Croatian, Bosnian and Serbian in Latin script; the Cyrillic ones are not Latin.
            (0x1A, 0x041A | 0x081A | 0x101A | 0x141A) => Letters::Qwertz,
            (0x1A, _) => Letters::Unknown,
            // German variants, Czech, Hungarian, Albanian, Slovak, Slovenian.
            (0x07 | 0x05 | 0x0E | 0x1C | 0x1B | 0x24, _) => Letters::Qwertz,
            // Catalan, Danish, English, Spanish, Finnish, Icelandic, Italian, Dutch, Norwegian,
            // Polish, Portuguese, Romanian, Swedish, Indonesian, Estonian, Latvian, Lithuanian,
            // Vietnamese, Afrikaans, Maltese, Irish, Malay, Swahili, Welsh, Galician, Frisian,
            // Basque, Filipino.
            (
                0x03 | 0x06 | 0x09 | 0x0A | 0x0B | 0x0F | 0x10 | 0x13 | 0x14 | 0x15 | 0x16 | 0x18
                | 0x1D | 0x21 | 0x25 | 0x26 | 0x27 | 0x2A | 0x36 | 0x3A | 0x3C | 0x3E | 0x41 | 0x52
                | 0x56 | 0x62 | 0x2D | 0x64,
                _,
            ) => Letters::Qwerty,
            _ => Letters::Unknown,
        }
    }

    fn letter(self, sc: u16) -> Option<char> {
        match self {
            Letters::Qwerty => qwerty_letter(sc),
            Letters::Qwertz => match sc {
                0x15 => Some('z'),
                0x2C => Some('y'),
                _ => qwerty_letter(sc),
            },
            Letters::Azerty => match sc {
                0x10 => Some('a'),
                0x11 => Some('z'),
                0x1E => Some('q'),
                0x27 => Some('m'),
                0x2C => Some('w'),
                0x32 => None,
                _ => qwerty_letter(sc),
            },
            Letters::Unknown => None,
        }
    }
}

/// The keyboard layouts psmgate knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Us,
    German,
    Uk,
    French,
    Other(Letters),
}

impl Layout {
    fn from_id(id: u32) -> Self {
        // Some clients send a whole HKL (0x04090409) instead of a layout id (0x00000409).
        let low = id & 0xFFFF;
        let id = if id >> 16 == low { low } else { id };
        match id {
            0x409 => Layout::Us,
            0x407 | 0xC07 => Layout::German,
            0x809 => Layout::Uk,
            0x40C => Layout::French,
            _ if id > 0xFFFF => Layout::Other(Letters::Unknown),
            _ => Layout::Other(Letters::of_language(u16::try_from(low).unwrap_or(0))),
        }
    }

    /// Whether right Alt is AltGr (and Ctrl+Alt acts as AltGr).
    fn has_altgr(self) -> bool {
        matches!(self, Layout::German | Layout::Uk | Layout::French)
    }

    /// The character key at a (non-extended) scancode, and whether its characters are certain.
    fn char_key(self, sc: u16) -> Option<(CharKey, bool)> {
        match self {
            Layout::Us => us_key(sc).map(|key| (key, true)),
            Layout::German => de_key(sc).or_else(|| us_key(sc)).map(|key| (key, true)),
            Layout::Uk => uk_key(sc).or_else(|| us_key(sc)).map(|key| (key, true)),
            Layout::French => fr_key(sc).or_else(|| us_key(sc)).map(|key| (key, true)),
            Layout::Other(letters) => {
                if let Some(c) = letters.letter(sc) {
                    Some((ascii(c), true))
                } else if sc == 0x39 {
                    Some((k(' ', ' '), true))
                } else {
                    us_key(sc).map(|key| (key, false))
                }
            }
        }
    }

    /// The keypad decimal key's character.
    fn decimal(self) -> Option<char> {
        match self {
            Layout::Us | Layout::Uk | Layout::French => Some('.'),
            Layout::German => Some(','),
            Layout::Other(_) => None,
        }
    }
}

/// The keysym-style name of a character (as [`keysym::describe`] names it).
fn char_name(c: char) -> String {
    keysym::describe(keysym::from_char(c)).0
}

/// Name and character of a Unicode keyboard event's character.
fn unicode_key(c: char) -> (String, Option<char>) {
    match c {
        '\r' | '\n' => ("Return".to_string(), Some('\n')),
        '\t' => ("Tab".to_string(), Some('\t')),
        '\u{8}' => ("BackSpace".to_string(), None),
        '\u{1b}' => ("Escape".to_string(), None),
        '\u{7f}' => ("Delete".to_string(), None),
        c if c.is_control() => (format!("U+{:04X}", u32::from(c)), None),
        c => (char_name(c), Some(c)),
    }
}

/// A key with a fixed name.
struct Named {
    name: &'static str,
    ch: Option<char>,
    /// Shift, Ctrl, Alt, Windows or a lock key: does not end a pending dead key.
    modifier: bool,
}

const fn named(name: &'static str, ch: Option<char>) -> Named {
    Named {
        name,
        ch,
        modifier: false,
    }
}

const fn modifier(name: &'static str) -> Named {
    Named {
        name,
        ch: None,
        modifier: true,
    }
}

/// Non-character keys, by scancode and extended flag (keypad digits excepted).
fn named_key(sc: u16, extended: bool, layout: Layout) -> Option<Named> {
    const F13_F23: [&str; 11] = [
        "F13", "F14", "F15", "F16", "F17", "F18", "F19", "F20", "F21", "F22", "F23",
    ];
    const F1_F10: [&str; 10] = ["F1", "F2", "F3", "F4", "F5", "F6", "F7", "F8", "F9", "F10"];
    if extended {
        return Some(match sc {
            0x10 => named("XF86AudioPrev", None),
            0x19 => named("XF86AudioNext", None),
            0x1C => named("KP_Enter", Some('\n')),
            0x1D => modifier("Control_R"),
            0x20 => named("XF86AudioMute", None),
            0x21 => named("XF86Calculator", None),
            0x22 => named("XF86AudioPlay", None),
            0x24 => named("XF86AudioStop", None),
            0x2E => named("XF86AudioLowerVolume", None),
            0x30 => named("XF86AudioRaiseVolume", None),
            0x32 => named("XF86HomePage", None),
            0x35 => named("KP_Divide", Some('/')),
            0x37 => named("Print", None),
            0x38 if layout.has_altgr() => modifier("ISO_Level3_Shift"),
            0x38 => modifier("Alt_R"),
            0x45 => modifier("Num_Lock"),
            0x46 => named("Pause", None),
            0x47 => named("Home", None),
            0x48 => named("Up", None),
            0x49 => named("Page_Up", None),
            0x4B => named("Left", None),
            0x4D => named("Right", None),
            0x4F => named("End", None),
            0x50 => named("Down", None),
            0x51 => named("Page_Down", None),
            0x52 => named("Insert", None),
            0x53 => named("Delete", None),
            0x5B => modifier("Super_L"),
            0x5C => modifier("Super_R"),
            0x5D => named("Menu", None),
            0x5E => named("XF86PowerOff", None),
            0x5F => named("XF86Sleep", None),
            0x63 => named("XF86WakeUp", None),
            0x65 => named("XF86Search", None),
            0x66 => named("XF86Favorites", None),
            0x67 => named("XF86Refresh", None),
            0x68 => named("XF86Stop", None),
            0x69 => named("XF86Forward", None),
            0x6A => named("XF86Back", None),
            0x6B => named("XF86MyComputer", None),
            0x6C => named("XF86Mail", None),
            0x6D => named("XF86AudioMedia", None),
            _ => return None,
        });
    }
    Some(match sc {
        0x01 => named("Escape", None),
        0x0E => named("BackSpace", None),
        0x0F => named("Tab", Some('\t')),
        0x1C => named("Return", Some('\n')),
        0x1D => modifier("Control_L"),
        0x2A => modifier("Shift_L"),
        0x36 => modifier("Shift_R"),
        0x38 => modifier("Alt_L"),
        0x3A => modifier("Caps_Lock"),
        0x3B..=0x44 => named(F1_F10.get(usize::from(sc - 0x3B))?, None),
        0x45 => modifier("Num_Lock"),
        0x46 => modifier("Scroll_Lock"),
        0x54 => named("Sys_Req", None),
        0x57 => named("F11", None),
        0x58 => named("F12", None),
        0x64..=0x6E => named(F13_F23.get(usize::from(sc - 0x64))?, None),
        0x70 => named("Hiragana_Katakana", None),
        0x76 => named("F24", None),
        0x79 => named("Henkan", None),
        0x7B => named("Muhenkan", None),
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// Decoder
// ---------------------------------------------------------------------------------------------

/// Which modifier keys are held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Modifiers {
    shift_l: bool,
    shift_r: bool,
    ctrl_l: bool,
    ctrl_r: bool,
    alt_l: bool,
    alt_r: bool,
    super_l: bool,
    super_r: bool,
}

impl Modifiers {
    fn shift(&self) -> bool {
        self.shift_l || self.shift_r
    }

    fn ctrl(&self) -> bool {
        self.ctrl_l || self.ctrl_r
    }

    fn alt(&self) -> bool {
        self.alt_l || self.alt_r
    }

    fn win(&self) -> bool {
        self.super_l || self.super_r
    }
}

/// Decodes RDP client input (fast path and slow path) into transcript [`Input`], keeping the
/// keyboard, lock and pointer state a session's input needs to be read correctly.
///
/// Sans-I/O: feed it every client → server input frame in order.
#[derive(Debug, Clone)]
pub struct InputDecoder {
    layout_id: u32,
    layout: Layout,
    io_channel: Option<u16>,
    mods: Modifiers,
    caps_lock: bool,
    num_lock: bool,
    scroll_lock: bool,
    caps_held: bool,
    num_held: bool,
    scroll_held: bool,
    /// Dead key waiting for the next character.
    dead: Option<Accent>,
    /// After `E1 1D` (Pause), the direction of the `45` that completes it.
    pause_tail: Option<bool>,
    /// Name and character each held key was recorded with, so its release reads the same.
    pressed: HashMap<(u8, bool), (String, Option<char>)>,
    /// A high surrogate of a Unicode event waiting for its low half: (down, code unit).
    surrogate: Option<(bool, u16)>,
    position: Option<(u16, u16)>,
    last_pointer: Option<(u16, u16)>,
    wheel_v: i32,
    wheel_h: i32,
    /// Mouse buttons held: bit `n` for button `n` (see [`BUTTONS`]).
    buttons: u16,
}

impl InputDecoder {
    /// A decoder for a client whose keyboard layout id (GCC Client Core Data `keyboardLayout`,
    /// e.g. `0x409` US English, `0x407` German, `0x809` UK, `0x40C` French) is `keyboard_layout`.
    pub fn new(keyboard_layout: u32) -> Self {
        Self {
            layout_id: keyboard_layout,
            layout: Layout::from_id(keyboard_layout),
            io_channel: None,
            mods: Modifiers::default(),
            caps_lock: false,
            num_lock: false,
            scroll_lock: false,
            caps_held: false,
            num_held: false,
            scroll_held: false,
            dead: None,
            pause_tail: None,
            pressed: HashMap::new(),
            surrogate: None,
            position: None,
            last_pointer: None,
            wheel_v: 0,
            wheel_h: 0,
            buttons: 0,
        }
    }

    /// The keyboard layout id the decoder was created with.
    pub fn keyboard_layout(&self) -> u32 {
        self.layout_id
    }

    /// Restricts slow-path input to the MCS I/O channel (`None`: accept any channel). Input PDUs
    /// only travel on the I/O channel; set it once the MCS Connect Response names it.
    pub fn set_io_channel(&mut self, channel_id: Option<u16>) {
        self.io_channel = channel_id;
    }

    /// The last absolute pointer position the client reported, if any.
    pub fn pointer_position(&self) -> Option<(u16, u16)> {
        self.position
    }

    /// Whether Caps Lock is on (as last synchronised or toggled).
    pub fn caps_lock(&self) -> bool {
        self.caps_lock
    }

    /// Whether Num Lock is on (as last synchronised or toggled).
    pub fn num_lock(&self) -> bool {
        self.num_lock
    }

    /// The keys held down (pressed and not yet released), as (scancode, extended) in order.
    pub fn held_keys(&self) -> Vec<(u8, bool)> {
        let mut keys: Vec<(u8, bool)> = self.pressed.keys().copied().collect();
        keys.sort_unstable();
        keys
    }

    /// The mouse buttons held down, numbered as in [`Input::Button`] (1–3 left, middle,
    /// right; 8 and 9 the X1/X2 buttons), in order.
    pub fn held_buttons(&self) -> Vec<u8> {
        BUTTONS
            .into_iter()
            .filter(|b| self.buttons & (1 << b) != 0)
            .collect()
    }

    /// The events that release every key and mouse button held ([`Self::held_keys`],
    /// [`Self::held_buttons`]), for psmgate to send the target on the client's behalf: key
    /// releases (other keys before Shift, Ctrl, Alt, Windows and the lock keys), then button
    /// releases at the pointer's last position (relative events, which need none, when the
    /// client never gave an absolute one). Unicode keyboard events carry characters, not keys,
    /// and hold nothing down on the target: they have no release here.
    ///
    /// Nothing changes until [`Self::apply_sent`] is given the events that were sent.
    pub fn releases(&self) -> Vec<FastPathInputEvent> {
        let mut keys = self.held_keys();
        keys.sort_by_key(|&(sc, ext)| {
            named_key(u16::from(sc), ext, self.layout).is_some_and(|n| n.modifier)
        });
        let mut out: Vec<FastPathInputEvent> = keys
            .into_iter()
            .map(|(sc, ext)| {
                let mut flags = FastPathKeyFlags::RELEASE;
                flags.set(FastPathKeyFlags::EXTENDED, ext);
                FastPathInputEvent::KeyboardEvent(flags, sc)
            })
            .collect();
        for button in self.held_buttons() {
            out.push(match (button, self.position) {
                (8 | 9, Some((x, y))) => FastPathInputEvent::MouseEventEx(MouseXPdu {
                    flags: if button == 8 {
                        PointerXFlags::BUTTON1
                    } else {
                        PointerXFlags::BUTTON2
                    },
                    x_position: x,
                    y_position: y,
                }),
                (_, Some((x, y))) => FastPathInputEvent::MouseEvent(MousePdu {
                    flags: match button {
                        1 => PointerFlags::LEFT_BUTTON,
                        2 => PointerFlags::MIDDLE_BUTTON_OR_WHEEL,
                        _ => PointerFlags::RIGHT_BUTTON,
                    },
                    number_of_wheel_rotation_units: 0,
                    x_position: x,
                    y_position: y,
                }),
                (_, None) => FastPathInputEvent::MouseEventRel(MouseRelPdu {
                    flags: match button {
                        1 => PointerRelFlags::BUTTON1,
                        2 => PointerRelFlags::BUTTON3,
                        3 => PointerRelFlags::BUTTON2,
                        8 => PointerRelFlags::XBUTTON1,
                        _ => PointerRelFlags::XBUTTON2,
                    },
                    x_delta: 0,
                    y_delta: 0,
                }),
            });
        }
        out
    }

    /// Takes in events psmgate sent the target itself (such as [`Self::releases`]), so that the
    /// decoder's state stays that of the target's; they produce no [`Input`].
    pub fn apply_sent(&mut self, events: &[FastPathInputEvent]) {
        let mut ignored = Vec::new();
        for event in events {
            self.fast_path_event(event, &mut ignored);
        }
    }

    /// Decodes one complete client → server fast-path input frame.
    pub fn fast_path(&mut self, frame: &[u8]) -> Result<Vec<Input>, InputError> {
        let header = *frame.first().ok_or(InputError::Empty)?;
        if header & 0x03 != 0 {
            return Err(InputError::NotFastPath(header));
        }
        if header >> 6 != 0 {
            return Err(InputError::Encrypted(header));
        }
        let truncated = InputError::Length {
            declared: frame.len().saturating_add(1),
            actual: frame.len(),
        };
        let b1 = *frame.get(1).ok_or(truncated.clone())?;
        let (declared, length_size) = if b1 & 0x80 != 0 {
            let b2 = *frame.get(2).ok_or(truncated.clone())?;
            ((usize::from(b1 & 0x7F) << 8) | usize::from(b2), 2)
        } else {
            (usize::from(b1), 1)
        };
        let count_size = usize::from((header >> 2) & 0x0F == 0);
        // The decoder below subtracts the header from the declared length: make sure it fits.
        if declared < 1 + length_size + count_size || declared != frame.len() {
            return Err(InputError::Length {
                declared,
                actual: frame.len(),
            });
        }
        let input: FastPathInput =
            ironrdp_core::decode(frame).map_err(malformed("fast-path input"))?;
        let mut out = Vec::with_capacity(input.input_events().len());
        for event in input.input_events() {
            self.fast_path_event(event, &mut out);
        }
        Ok(out)
    }

    /// Decodes one complete client → server slow-path (TPKT) frame. `Ok(None)` when it is not an
    /// Input PDU (connection sequence, virtual channel data, other Share Data PDUs, …).
    pub fn slow_path(&mut self, frame: &[u8]) -> Result<Option<Vec<Input>>, InputError> {
        let Some(events) = self.slow_path_events(frame)? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(events.len());
        for event in &events {
            self.slow_path_event(event, &mut out);
        }
        Ok(Some(out))
    }

    /// The events of a slow-path Input PDU, leaving the decoder's state as it is: `Ok(None)`
    /// when the frame is not an Input PDU (see [`Self::slow_path`]).
    pub fn slow_path_events(&self, frame: &[u8]) -> Result<Option<Vec<InputEvent>>, InputError> {
        if frame.is_empty() {
            return Err(InputError::Empty);
        }
        // TPKT version 3; anything else (a fast-path frame) is not slow-path input.
        if frame.first() != Some(&3) || frame.len() < 7 {
            return Ok(None);
        }
        let declared = match (frame.get(2), frame.get(3)) {
            (Some(&hi), Some(&lo)) => usize::from(u16::from_be_bytes([hi, lo])),
            _ => return Ok(None),
        };
        if declared != frame.len() {
            return Err(InputError::Length {
                declared,
                actual: frame.len(),
            });
        }
        // X.224 Data TPDU carrying an MCS Send Data Request.
        let li = frame.get(4).copied().unwrap_or(0);
        if frame.get(5) != Some(&X224_DATA) {
            return Ok(None);
        }
        let mcs_at = 5usize.saturating_add(usize::from(li));
        match frame.get(mcs_at) {
            Some(choice) if choice >> 2 == MCS_SEND_DATA_REQUEST => {}
            _ => return Ok(None),
        }
        let request: X224<SendDataRequest<'_>> =
            ironrdp_core::decode(frame).map_err(malformed("MCS Send Data Request"))?;
        let request = request.0;
        if self.io_channel.is_some_and(|io| io != request.channel_id) {
            return Ok(None);
        }
        let data: &[u8] = &request.user_data;
        // Share Control header (6 bytes) + Share Data header (12 bytes).
        let pdu_type = match (data.get(2), data.get(3)) {
            (Some(&lo), Some(&hi)) => u16::from_le_bytes([lo, hi]),
            _ => return Ok(None),
        };
        if pdu_type & 0x0F != PDUTYPE_DATAPDU || data.get(14) != Some(&PDUTYPE2_INPUT) {
            return Ok(None);
        }
        if data
            .get(15)
            .is_some_and(|flags| flags & PACKET_COMPRESSED != 0)
        {
            return Err(InputError::Compressed);
        }
        let header: ShareControlHeader =
            ironrdp_core::decode(data).map_err(malformed("slow-path Input PDU"))?;
        match header.share_control_pdu {
            ShareControlPdu::Data(data) => match data.share_data_pdu {
                ShareDataPdu::Input(pdu) => Ok(Some(pdu.0)),
                ShareDataPdu::Compressed { .. } => Err(InputError::Compressed),
                _ => Ok(None),
            },
            _ => Ok(None),
        }
    }

    fn fast_path_event(&mut self, event: &FastPathInputEvent, out: &mut Vec<Input>) {
        match event {
            FastPathInputEvent::KeyboardEvent(flags, code) => self.scancode(
                u16::from(*code),
                flags.contains(FastPathKeyFlags::EXTENDED),
                flags.contains(FastPathKeyFlags::EXTENDED1),
                !flags.contains(FastPathKeyFlags::RELEASE),
                out,
            ),
            FastPathInputEvent::UnicodeKeyboardEvent(flags, code) => {
                self.unicode(*code, !flags.contains(FastPathKeyFlags::RELEASE), out)
            }
            FastPathInputEvent::MouseEvent(pdu) => self.mouse(pdu, out),
            FastPathInputEvent::MouseEventEx(pdu) => self.mouse_x(pdu, out),
            FastPathInputEvent::MouseEventRel(pdu) => self.mouse_rel(pdu, out),
            FastPathInputEvent::SyncEvent(flags) => self.sync(
                flags.contains(SynchronizeFlags::CAPS_LOCK),
                flags.contains(SynchronizeFlags::NUM_LOCK),
                flags.contains(SynchronizeFlags::SCROLL_LOCK),
            ),
            FastPathInputEvent::QoeEvent(_) => {}
        }
    }

    fn slow_path_event(&mut self, event: &InputEvent, out: &mut Vec<Input>) {
        match event {
            InputEvent::ScanCode(pdu) => self.scancode(
                pdu.key_code,
                pdu.flags.contains(ScanCodeFlags::EXTENDED),
                pdu.flags.contains(ScanCodeFlags::EXTENDED_1),
                !pdu.flags.contains(ScanCodeFlags::RELEASE),
                out,
            ),
            InputEvent::Unicode(pdu) => self.unicode(
                pdu.unicode_code,
                !pdu.flags.contains(UnicodeFlags::RELEASE),
                out,
            ),
            InputEvent::Mouse(pdu) => self.mouse(pdu, out),
            InputEvent::MouseX(pdu) => self.mouse_x(pdu, out),
            InputEvent::MouseRel(pdu) => self.mouse_rel(pdu, out),
            InputEvent::Sync(pdu) => self.sync(
                pdu.flags.contains(SyncToggleFlags::CAPS_LOCK),
                pdu.flags.contains(SyncToggleFlags::NUM_LOCK),
                pdu.flags.contains(SyncToggleFlags::SCROLL_LOCK),
            ),
            InputEvent::Unused(_) => {}
        }
    }

    // --- keyboard ----------------------------------------------------------------------------

    fn sync(&mut self, caps: bool, num: bool, scroll: bool) {
        self.caps_lock = caps;
        self.num_lock = num;
        self.scroll_lock = scroll;
        // Clients synchronise when they regain focus and then re-send whatever is still held.
        self.mods = Modifiers::default();
        self.caps_held = false;
        self.num_held = false;
        self.scroll_held = false;
        self.dead = None;
        self.pause_tail = None;
        self.surrogate = None;
    }

    fn altgr(&self) -> bool {
        self.layout.has_altgr() && (self.mods.alt_r || (self.mods.ctrl() && self.mods.alt_l))
    }

    /// A shortcut modifier is held: keys type nothing.
    fn shortcut(&self) -> bool {
        !self.altgr() && (self.mods.ctrl() || self.mods.alt() || self.mods.win())
    }

    fn track_modifiers(&mut self, sc: u16, extended: bool, down: bool) {
        match (sc, extended) {
            (0x2A, false) => self.mods.shift_l = down,
            (0x36, false) => self.mods.shift_r = down,
            (0x1D, false) => self.mods.ctrl_l = down,
            (0x1D, true) => self.mods.ctrl_r = down,
            (0x38, false) => self.mods.alt_l = down,
            (0x38, true) => self.mods.alt_r = down,
            (0x5B, true) => self.mods.super_l = down,
            (0x5C, true) => self.mods.super_r = down,
            (0x3A, false) => {
                if down && !self.caps_held {
                    self.caps_lock = !self.caps_lock;
                }
                self.caps_held = down;
            }
            (0x45, _) => {
                if down && !self.num_held {
                    self.num_lock = !self.num_lock;
                }
                self.num_held = down;
            }
            (0x46, false) => {
                if down && !self.scroll_held {
                    self.scroll_lock = !self.scroll_lock;
                }
                self.scroll_held = down;
            }
            _ => {}
        }
    }

    fn scancode(
        &mut self,
        sc: u16,
        extended: bool,
        extended1: bool,
        down: bool,
        out: &mut Vec<Input>,
    ) {
        let pause_tail = self.pause_tail.take();
        if extended1 {
            // Pause is sent as E1 1D followed by 45 (which is not Num Lock then).
            let key = if sc == 0x1D {
                self.pause_tail = Some(down);
                "Pause".to_string()
            } else {
                format!("sc_e1_0x{sc:02x}")
            };
            out.push(Input::Key {
                key,
                ch: None,
                down,
            });
            return;
        }
        if sc == 0x45 && !extended && pause_tail == Some(down) {
            return;
        }
        if extended && (sc == 0x2A || sc == 0x36) {
            // Keyboard-generated fake shifts around navigation keys: not keys the admin pressed.
            return;
        }
        self.track_modifiers(sc, extended, down);
        let slot = u8::try_from(sc).ok().map(|sc| (sc, extended));
        if !down {
            if let Some((key, ch)) = slot.and_then(|slot| self.pressed.remove(&slot)) {
                out.push(Input::Key {
                    key,
                    ch,
                    down: false,
                });
                return;
            }
        }
        let (key, ch) = self.describe_scancode(sc, extended, down);
        if down {
            if let Some(slot) = slot {
                self.pressed.insert(slot, (key.clone(), ch));
            }
        }
        out.push(Input::Key { key, ch, down });
    }

    fn describe_scancode(&mut self, sc: u16, extended: bool, down: bool) -> (String, Option<char>) {
        if let Some(named) = named_key(sc, extended, self.layout) {
            if down && !named.modifier {
                self.dead = None;
            }
            let ch = if self.shortcut() { None } else { named.ch };
            return (named.name.to_string(), ch);
        }
        if !extended {
            if let Some((name, ch)) = self.keypad(sc) {
                if down {
                    self.dead = None;
                }
                let ch = if self.shortcut() { None } else { ch };
                return (name.to_string(), ch);
            }
            if let Some((key, certain)) = self.layout.char_key(sc) {
                return self.resolve(key, certain, down);
            }
        }
        if down {
            self.dead = None;
        }
        let name = if extended {
            format!("sc_e0_0x{sc:02x}")
        } else {
            format!("sc_0x{sc:02x}")
        };
        (name, None)
    }

    /// Keypad keys (not extended): digits with Num Lock on and Shift up, navigation otherwise.
    fn keypad(&self, sc: u16) -> Option<(&'static str, Option<char>)> {
        let digits = self.num_lock && !self.mods.shift();
        let pick = |digit: (&'static str, char), nav: &'static str| {
            if digits {
                (digit.0, Some(digit.1))
            } else {
                (nav, None)
            }
        };
        Some(match sc {
            0x37 => ("KP_Multiply", Some('*')),
            0x4A => ("KP_Subtract", Some('-')),
            0x4E => ("KP_Add", Some('+')),
            0x47 => pick(("KP_7", '7'), "KP_Home"),
            0x48 => pick(("KP_8", '8'), "KP_Up"),
            0x49 => pick(("KP_9", '9'), "KP_Page_Up"),
            0x4B => pick(("KP_4", '4'), "KP_Left"),
            0x4C => pick(("KP_5", '5'), "KP_Begin"),
            0x4D => pick(("KP_6", '6'), "KP_Right"),
            0x4F => pick(("KP_1", '1'), "KP_End"),
            0x50 => pick(("KP_2", '2'), "KP_Down"),
            0x51 => pick(("KP_3", '3'), "KP_Page_Down"),
            0x52 => pick(("KP_0", '0'), "KP_Insert"),
            0x53 if digits => ("KP_Decimal", self.layout.decimal()),
            0x53 => ("KP_Delete", None),
            _ => return None,
        })
    }

    /// Name and character of a character key under the current modifiers, handling dead keys.
    fn resolve(&mut self, key: CharKey, certain: bool, down: bool) -> (String, Option<char>) {
        let shifted = self.mods.shift() ^ (key.caps && self.caps_lock);
        let level = match (shifted, key.shift) {
            (true, Sym::Void) | (false, _) => key.base,
            (true, sym) => sym,
        };
        let (sym, types) = if self.altgr() {
            match key.altgr {
                Sym::Void => (level, false),
                sym => (sym, true),
            }
        } else {
            (level, !self.shortcut())
        };
        let types = types && certain;
        let name = sym.name();
        if !down {
            let ch = match sym {
                Sym::Ch(c) if types => Some(c),
                _ => None,
            };
            return (name, ch);
        }
        if !types {
            self.dead = None;
            return (name, None);
        }
        match sym {
            Sym::Dead(accent) => match self.dead.take() {
                Some(previous) => (name, Some(previous.spacing())),
                None => {
                    self.dead = Some(accent);
                    (name, None)
                }
            },
            Sym::Ch(c) => {
                let ch = match self.dead.take() {
                    Some(accent) => accent.compose(c).unwrap_or(c),
                    None => c,
                };
                (name, Some(ch))
            }
            Sym::Void => (name, None),
        }
    }

    fn unicode(&mut self, unit: u16, down: bool, out: &mut Vec<Input>) {
        let lone = |unit: u16| Input::Key {
            key: format!("U+{unit:04X}"),
            ch: None,
            down,
        };
        match unit {
            0xD800..=0xDBFF => {
                if let Some((d, stale)) = self.surrogate.replace((down, unit)) {
                    out.push(Input::Key {
                        key: format!("U+{stale:04X}"),
                        ch: None,
                        down: d,
                    });
                }
            }
            0xDC00..=0xDFFF => match self.surrogate.take() {
                Some((d, high)) if d == down => {
                    let c = char::decode_utf16([high, unit]).next().and_then(Result::ok);
                    match c {
                        Some(c) => {
                            let (key, ch) = unicode_key(c);
                            out.push(Input::Key { key, ch, down });
                        }
                        None => out.push(lone(unit)),
                    }
                }
                Some((d, high)) => {
                    out.push(Input::Key {
                        key: format!("U+{high:04X}"),
                        ch: None,
                        down: d,
                    });
                    out.push(lone(unit));
                }
                None => out.push(lone(unit)),
            },
            _ => {
                if let Some((d, stale)) = self.surrogate.take() {
                    out.push(Input::Key {
                        key: format!("U+{stale:04X}"),
                        ch: None,
                        down: d,
                    });
                }
                match char::from_u32(u32::from(unit)) {
                    Some(c) => {
                        let (key, ch) = unicode_key(c);
                        out.push(Input::Key { key, ch, down });
                    }
                    None => out.push(lone(unit)),
                }
            }
        }
    }

    // --- pointer -----------------------------------------------------------------------------

    fn emit_pointer(&mut self, out: &mut Vec<Input>) {
        if let Some((x, y)) = self.position {
            if self.last_pointer != Some((x, y)) {
                self.last_pointer = Some((x, y));
                out.push(Input::Pointer {
                    x: u32::from(x),
                    y: u32::from(y),
                });
            }
        }
    }

    fn button(&mut self, button: u8, down: bool, out: &mut Vec<Input>) {
        if BUTTONS.contains(&button) {
            if down {
                self.buttons |= 1 << button;
            } else {
                self.buttons &= !(1 << button);
            }
        }
        let (x, y) = self.position.unwrap_or((0, 0));
        out.push(Input::Button {
            button,
            down,
            x: u32::from(x),
            y: u32::from(y),
        });
    }

    /// Adds wheel units to an accumulator; whole notches come out, the remainder stays.
    fn notches(acc: &mut i32, units: i16) -> i32 {
        *acc = acc.saturating_add(i32::from(units));
        let steps = *acc / WHEEL_DELTA;
        *acc -= steps * WHEEL_DELTA;
        steps
    }

    fn mouse(&mut self, pdu: &MousePdu, out: &mut Vec<Input>) {
        let flags = pdu.flags;
        if flags.contains(PointerFlags::HORIZONTAL_WHEEL) {
            let steps = Self::notches(&mut self.wheel_h, pdu.number_of_wheel_rotation_units);
            if steps != 0 {
                out.push(Input::Wheel { dx: steps, dy: 0 });
            }
            return;
        }
        if flags.contains(PointerFlags::VERTICAL_WHEEL) {
            // Positive rotation is away from the user: scrolling up.
            let steps = Self::notches(&mut self.wheel_v, pdu.number_of_wheel_rotation_units);
            if steps != 0 {
                out.push(Input::Wheel { dx: 0, dy: -steps });
            }
            return;
        }
        self.position = Some((pdu.x_position, pdu.y_position));
        if flags.contains(PointerFlags::MOVE) {
            self.emit_pointer(out);
        }
        let down = flags.contains(PointerFlags::DOWN);
        for (flag, button) in [
            (PointerFlags::LEFT_BUTTON, 1),
            (PointerFlags::MIDDLE_BUTTON_OR_WHEEL, 2),
            (PointerFlags::RIGHT_BUTTON, 3),
        ] {
            if flags.contains(flag) {
                self.button(button, down, out);
            }
        }
    }

    fn mouse_x(&mut self, pdu: &MouseXPdu, out: &mut Vec<Input>) {
        self.position = Some((pdu.x_position, pdu.y_position));
        let down = pdu.flags.contains(PointerXFlags::DOWN);
        for (flag, button) in [(PointerXFlags::BUTTON1, 8), (PointerXFlags::BUTTON2, 9)] {
            if pdu.flags.contains(flag) {
                self.button(button, down, out);
            }
        }
    }

    fn mouse_rel(&mut self, pdu: &MouseRelPdu, out: &mut Vec<Input>) {
        let flags = pdu.flags;
        if flags.contains(PointerRelFlags::MOVE) {
            if let Some((x, y)) = self.position {
                let shift = |at: u16, by: i16| {
                    let moved = i32::from(at).saturating_add(i32::from(by));
                    u16::try_from(moved.clamp(0, i32::from(u16::MAX))).unwrap_or(at)
                };
                self.position = Some((shift(x, pdu.x_delta), shift(y, pdu.y_delta)));
                self.emit_pointer(out);
            }
        }
        let down = flags.contains(PointerRelFlags::DOWN);
        for (flag, button) in [
            (PointerRelFlags::BUTTON1, 1),
            (PointerRelFlags::BUTTON3, 2),
            (PointerRelFlags::BUTTON2, 3),
            (PointerRelFlags::XBUTTON1, 8),
            (PointerRelFlags::XBUTTON2, 9),
        ] {
            if flags.contains(flag) {
                self.button(button, down, out);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Input psmgate writes itself
// ---------------------------------------------------------------------------------------------

/// Client → server fast-path input frames carrying `events` (one frame per 255 events; none for
/// no events), unencrypted: psmgate writes input only on connections secured by TLS, where
/// fast-path frames carry no encryption of their own.
///
/// The length is always written in its two-byte form, as FreeRDP writes it.
pub fn encode_fast_path(events: &[FastPathInputEvent]) -> Result<Vec<Vec<u8>>, InputError> {
    events
        .chunks(FastPathInput::MAX_EVENTS)
        .map(|chunk| {
            let mut body = Vec::new();
            for event in chunk {
                body.extend(
                    ironrdp_core::encode_vec(event)
                        .map_err(|e| InputError::Encode(e.to_string()))?,
                );
            }
            let count = u8::try_from(chunk.len())
                .map_err(|_| InputError::Encode("too many events".into()))?;
            // numEvents in the header byte when it fits in four bits, else in its own byte.
            let (header, count_byte) = if count < 16 {
                (count << 2, None)
            } else {
                (0, Some(count))
            };
            let total = 3 + usize::from(count_byte.is_some()) + body.len();
            let total = u16::try_from(total)
                .ok()
                .filter(|t| *t <= 0x7FFF)
                .ok_or_else(|| InputError::Encode(format!("frame of {total} bytes")))?;
            let mut frame = Vec::with_capacity(usize::from(total));
            frame.push(header);
            frame.extend_from_slice(&(total | 0x8000).to_be_bytes());
            frame.extend(count_byte);
            frame.extend(body);
            Ok(frame)
        })
        .collect()
}

/// The slow-path form of a fast-path input event (`None` for a QoE timestamp, which has none).
pub fn to_slow_path(event: &FastPathInputEvent) -> Option<InputEvent> {
    let key_flags = |flags: FastPathKeyFlags| {
        let mut out = ScanCodeFlags::empty();
        out.set(
            ScanCodeFlags::RELEASE,
            flags.contains(FastPathKeyFlags::RELEASE),
        );
        out.set(
            ScanCodeFlags::EXTENDED,
            flags.contains(FastPathKeyFlags::EXTENDED),
        );
        out.set(
            ScanCodeFlags::EXTENDED_1,
            flags.contains(FastPathKeyFlags::EXTENDED1),
        );
        out
    };
    Some(match event {
        FastPathInputEvent::KeyboardEvent(flags, code) => InputEvent::ScanCode(ScanCodePdu {
            flags: key_flags(*flags),
            key_code: u16::from(*code),
        }),
        FastPathInputEvent::UnicodeKeyboardEvent(flags, code) => InputEvent::Unicode(UnicodePdu {
            flags: if flags.contains(FastPathKeyFlags::RELEASE) {
                UnicodeFlags::RELEASE
            } else {
                UnicodeFlags::empty()
            },
            unicode_code: *code,
        }),
        FastPathInputEvent::MouseEvent(pdu) => InputEvent::Mouse(*pdu),
        FastPathInputEvent::MouseEventEx(pdu) => InputEvent::MouseX(*pdu),
        FastPathInputEvent::MouseEventRel(pdu) => InputEvent::MouseRel(*pdu),
        FastPathInputEvent::SyncEvent(flags) => InputEvent::Sync(SyncPdu {
            flags: SyncToggleFlags::from_bits_retain(u32::from(flags.bits())),
        }),
        FastPathInputEvent::QoeEvent(_) => return None,
    })
}

/// Where a client's slow-path Input PDU travels: its MCS user channel (the sender), the I/O
/// channel, and the share the server's Demand Active named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlowPathRoute {
    /// The client's MCS user channel id.
    pub user_channel: u16,
    /// The MCS I/O channel id.
    pub io_channel: u16,
    /// The share id.
    pub share_id: u32,
}

/// A client → server slow-path frame (TPKT, X.224, MCS Send Data Request, Share Data) with one
/// Input PDU carrying `events` (`None` for no events), unencrypted (see [`encode_fast_path`]).
pub fn encode_slow_path(
    events: &[FastPathInputEvent],
    route: SlowPathRoute,
) -> Result<Option<Vec<u8>>, InputError> {
    let events: Vec<InputEvent> = events.iter().filter_map(to_slow_path).collect();
    if events.is_empty() {
        return Ok(None);
    }
    let header = ShareControlHeader {
        share_control_pdu: ShareControlPdu::Data(ShareDataHeader {
            share_data_pdu: ShareDataPdu::Input(InputEventPdu(events)),
            stream_priority: StreamPriority::Low,
            compression_flags: CompressionFlags::empty(),
            compression_type: CompressionType::K8,
        }),
        pdu_source: route.user_channel,
        share_id: route.share_id,
    };
    let encode = |e: ironrdp_core::EncodeError| InputError::Encode(e.to_string());
    let user_data = ironrdp_core::encode_vec(&header).map_err(encode)?;
    let frame = ironrdp_core::encode_vec(&X224(SendDataRequest {
        initiator_id: route.user_channel,
        channel_id: route.io_channel,
        user_data: std::borrow::Cow::Owned(user_data),
    }))
    .map_err(encode)?;
    Ok(Some(frame))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironrdp_core::encode_vec;
    use ironrdp_pdu::mcs::ChannelJoinRequest;
    use ironrdp_pdu::rdp::finalization_messages::SynchronizePdu;
    use proptest::prelude::*;
    use std::borrow::Cow;

    /// One key press or release, as scancode + extended flag.
    #[derive(Clone, Copy)]
    enum Ev {
        Key(u8, bool, bool),
        Uni(u16, bool),
        Mouse(u16, i16, u16, u16),
        MouseX(u16, u16, u16),
        Sync(bool, bool),
    }

    fn fast_event(ev: Ev) -> FastPathInputEvent {
        match ev {
            Ev::Key(sc, ext, down) => {
                let mut f = FastPathKeyFlags::empty();
                f.set(FastPathKeyFlags::EXTENDED, ext);
                f.set(FastPathKeyFlags::RELEASE, !down);
                FastPathInputEvent::KeyboardEvent(f, sc)
            }
            Ev::Uni(code, down) => {
                let f = if down {
                    FastPathKeyFlags::empty()
                } else {
                    FastPathKeyFlags::RELEASE
                };
                FastPathInputEvent::UnicodeKeyboardEvent(f, code)
            }
            Ev::Mouse(flags, wheel, x, y) => FastPathInputEvent::MouseEvent(MousePdu {
                flags: PointerFlags::from_bits_retain(flags),
                number_of_wheel_rotation_units: wheel,
                x_position: x,
                y_position: y,
            }),
            Ev::MouseX(flags, x, y) => FastPathInputEvent::MouseEventEx(MouseXPdu {
                flags: PointerXFlags::from_bits_retain(flags),
                x_position: x,
                y_position: y,
            }),
            Ev::Sync(caps, num) => {
                let mut f = SynchronizeFlags::empty();
                f.set(SynchronizeFlags::CAPS_LOCK, caps);
                f.set(SynchronizeFlags::NUM_LOCK, num);
                FastPathInputEvent::SyncEvent(f)
            }
        }
    }

    fn slow_event(ev: Ev) -> InputEvent {
        match ev {
            Ev::Key(sc, ext, down) => {
                let mut flags = ScanCodeFlags::empty();
                flags.set(ScanCodeFlags::EXTENDED, ext);
                flags.set(ScanCodeFlags::RELEASE, !down);
                InputEvent::ScanCode(ScanCodePdu {
                    flags,
                    key_code: u16::from(sc),
                })
            }
            Ev::Uni(code, down) => InputEvent::Unicode(UnicodePdu {
                flags: if down {
                    UnicodeFlags::empty()
                } else {
                    UnicodeFlags::RELEASE
                },
                unicode_code: code,
            }),
            Ev::Mouse(flags, wheel, x, y) => InputEvent::Mouse(MousePdu {
                flags: PointerFlags::from_bits_retain(flags),
                number_of_wheel_rotation_units: wheel,
                x_position: x,
                y_position: y,
            }),
            Ev::MouseX(flags, x, y) => InputEvent::MouseX(MouseXPdu {
                flags: PointerXFlags::from_bits_retain(flags),
                x_position: x,
                y_position: y,
            }),
            Ev::Sync(caps, num) => {
                let mut flags = SyncToggleFlags::empty();
                flags.set(SyncToggleFlags::CAPS_LOCK, caps);
                flags.set(SyncToggleFlags::NUM_LOCK, num);
                InputEvent::Sync(SyncPdu { flags })
            }
        }
    }

    /// A fast-path input frame (always with a two-byte length: ironrdp-pdu 0.11's encoder
    /// miscounts its own length field when the frame crosses 127 bytes).
    fn fp_frame(events: &[FastPathInputEvent]) -> Vec<u8> {
        let mut body = Vec::new();
        for event in events {
            body.extend(encode_vec(event).unwrap());
        }
        let n = u8::try_from(events.len()).unwrap();
        let (header, extra) = if n < 16 { (n << 2, None) } else { (0, Some(n)) };
        let total = 3 + usize::from(extra.is_some()) + body.len();
        let total = u16::try_from(total).unwrap() | 0x8000;
        let mut frame = vec![header];
        frame.extend_from_slice(&total.to_be_bytes());
        frame.extend(extra);
        frame.extend(body);
        frame
    }

    fn fast_frame(evs: &[Ev]) -> Vec<u8> {
        let events: Vec<_> = evs.iter().copied().map(fast_event).collect();
        fp_frame(&events)
    }

    fn share_data_frame(pdu: ShareDataPdu, channel_id: u16) -> Vec<u8> {
        let header = ShareControlHeader {
            share_control_pdu: ShareControlPdu::Data(ShareDataHeader {
                share_data_pdu: pdu,
                stream_priority: StreamPriority::Medium,
                compression_flags: CompressionFlags::empty(),
                compression_type: CompressionType::K8,
            }),
            pdu_source: 1007,
            share_id: 0x0001_03EA,
        };
        let user_data = encode_vec(&header).unwrap();
        encode_vec(&X224(SendDataRequest {
            initiator_id: 1007,
            channel_id,
            user_data: Cow::Owned(user_data),
        }))
        .unwrap()
    }

    fn slow_frame(evs: &[Ev]) -> Vec<u8> {
        let events = evs.iter().copied().map(slow_event).collect();
        share_data_frame(ShareDataPdu::Input(InputEventPdu(events)), 1003)
    }

    /// A well-formed envelope (TPKT, X.224, MCS, Share Control, Share Data) around an Input PDU
    /// with `count` events and an arbitrary body.
    fn raw_input_frame(count: u16, body: &[u8]) -> Vec<u8> {
        let mut data = Vec::new();
        data.extend_from_slice(&u16::try_from(22 + body.len()).unwrap().to_le_bytes());
        data.extend_from_slice(&0x17u16.to_le_bytes());
        data.extend_from_slice(&1007u16.to_le_bytes());
        data.extend_from_slice(&0x0001_03EAu32.to_le_bytes());
        data.extend_from_slice(&[0, 2]);
        data.extend_from_slice(&u16::try_from(4 + body.len()).unwrap().to_le_bytes());
        data.extend_from_slice(&[PDUTYPE2_INPUT, 0, 0, 0]);
        data.extend_from_slice(&count.to_le_bytes());
        data.extend_from_slice(&[0, 0]);
        data.extend_from_slice(body);
        encode_vec(&X224(SendDataRequest {
            initiator_id: 1007,
            channel_id: 1003,
            user_data: Cow::Owned(data),
        }))
        .unwrap()
    }

    fn run(dec: &mut InputDecoder, evs: &[Ev]) -> Vec<Input> {
        dec.fast_path(&fast_frame(evs)).unwrap()
    }

    fn typed(inputs: &[Input]) -> String {
        inputs
            .iter()
            .filter_map(|i| match i {
                Input::Key { ch, down: true, .. } => *ch,
                _ => None,
            })
            .collect()
    }

    fn names(inputs: &[Input]) -> Vec<(String, bool)> {
        inputs
            .iter()
            .filter_map(|i| match i {
                Input::Key { key, down, .. } => Some((key.clone(), *down)),
                _ => None,
            })
            .collect()
    }

    /// Press and release a key.
    fn tap(sc: u8) -> [Ev; 2] {
        [Ev::Key(sc, false, true), Ev::Key(sc, false, false)]
    }

    fn shifted(sc: u8) -> [Ev; 4] {
        [
            Ev::Key(0x2A, false, true),
            Ev::Key(sc, false, true),
            Ev::Key(sc, false, false),
            Ev::Key(0x2A, false, false),
        ]
    }

    const SHIFT_L: u8 = 0x2A;

    fn hello_world() -> Vec<Ev> {
        let mut evs = Vec::new();
        evs.extend(shifted(0x23)); // H
        for sc in [0x12, 0x26, 0x26, 0x18, 0x33, 0x39] {
            evs.extend(tap(sc)); // e l l o , space
        }
        evs.extend(shifted(0x11)); // W
        for sc in [0x18, 0x13, 0x26, 0x20] {
            evs.extend(tap(sc)); // o r l d
        }
        evs.extend(shifted(0x02)); // !
        evs
    }

    #[test]
    fn hello_world_with_shift() {
        let mut dec = InputDecoder::new(0x409);
        let out = run(&mut dec, &hello_world());
        assert_eq!(typed(&out), "Hello, World!");
        let n = names(&out);
        assert_eq!(n[0], ("Shift_L".to_string(), true));
        assert_eq!(n[1], ("H".to_string(), true));
        // Punctuation is named like X11 keysyms.
        assert!(n.contains(&("comma".to_string(), true)));
        assert!(n.contains(&("space".to_string(), true)));
        assert!(n.contains(&("exclam".to_string(), true)));
        assert_eq!(out.len(), hello_world().len());
    }

    #[test]
    fn release_after_shift_reads_like_press() {
        let mut dec = InputDecoder::new(0x409);
        let out = run(
            &mut dec,
            &[
                Ev::Key(SHIFT_L, false, true),
                Ev::Key(0x1E, false, true),
                Ev::Key(SHIFT_L, false, false),
                Ev::Key(0x1E, false, false),
            ],
        );
        assert_eq!(
            out[3],
            Input::Key {
                key: "A".into(),
                ch: Some('A'),
                down: false
            }
        );
    }

    #[test]
    fn caps_lock_toggles_letters_only() {
        let mut dec = InputDecoder::new(0x409);
        let mut evs = Vec::new();
        evs.extend(tap(0x3A)); // Caps Lock on
        evs.extend(tap(0x1E)); // A
        evs.extend(shifted(0x1E)); // a
        evs.extend(tap(0x02)); // 1
        evs.extend(tap(0x3A)); // off
        evs.extend(tap(0x1E)); // a
        let out = run(&mut dec, &evs);
        assert_eq!(typed(&out), "Aa1a");
        assert!(!dec.caps_lock());
        // Held Caps Lock auto-repeats: toggles once.
        let out = run(
            &mut dec,
            &[
                Ev::Key(0x3A, false, true),
                Ev::Key(0x3A, false, true),
                Ev::Key(0x3A, false, false),
                Ev::Key(0x1F, false, true),
            ],
        );
        assert_eq!(typed(&out), "S");
        // The synchronize event sets the toggle state.
        let out = run(
            &mut dec,
            &[Ev::Sync(false, true), Ev::Key(0x1F, false, true)],
        );
        assert_eq!(typed(&out), "s");
        assert!(dec.num_lock());
        let out = run(
            &mut dec,
            &[Ev::Sync(true, false), Ev::Key(0x1F, false, true)],
        );
        assert_eq!(typed(&out), "S");
        assert!(dec.caps_lock() && !dec.num_lock());
    }

    #[test]
    fn german_layout() {
        let mut dec = InputDecoder::new(0x407);
        let mut evs = Vec::new();
        evs.extend(tap(0x15)); // z (US y)
        evs.extend(tap(0x2C)); // y (US z)
        evs.extend(shifted(0x08)); // /
        evs.extend(tap(0x27)); // ö
        evs.extend(tap(0x0C)); // ß
                               // AltGr (right Alt) + Q = @
        evs.push(Ev::Key(0x38, true, true));
        evs.extend(tap(0x10));
        evs.push(Ev::Key(0x38, true, false));
        // mstsc sends AltGr as left Ctrl + right Alt.
        evs.push(Ev::Key(0x1D, false, true));
        evs.push(Ev::Key(0x38, true, true));
        evs.extend(tap(0x12)); // €
        evs.push(Ev::Key(0x38, true, false));
        evs.push(Ev::Key(0x1D, false, false));
        // Ctrl+Alt (left) + Q = @ as well.
        evs.push(Ev::Key(0x1D, false, true));
        evs.push(Ev::Key(0x38, false, true));
        evs.extend(tap(0x10));
        evs.push(Ev::Key(0x38, false, false));
        evs.push(Ev::Key(0x1D, false, false));
        let out = run(&mut dec, &evs);
        assert_eq!(typed(&out), "zy/öß@€@");
        let n = names(&out);
        assert!(n.contains(&("ISO_Level3_Shift".to_string(), true)));
        assert!(n.contains(&("at".to_string(), true)));
        assert!(n.contains(&("slash".to_string(), true)));
    }

    #[test]
    fn german_dead_keys() {
        let mut dec = InputDecoder::new(0x407);
        let mut evs = Vec::new();
        evs.extend(tap(0x29)); // ^ (dead)
        evs.extend(tap(0x12)); // e → ê
        evs.extend(tap(0x0D)); // ´ (dead)
        evs.extend(shifted(0x12)); // E → É
        evs.extend(tap(0x29)); // ^
        evs.extend(tap(0x39)); // space → ^
        evs.extend(tap(0x29)); // ^
        evs.extend(tap(0x31)); // n → n (accent dropped)
        let out = run(&mut dec, &evs);
        assert_eq!(typed(&out), "êÉ^n");
        assert_eq!(names(&out)[0], ("dead_circumflex".to_string(), true));
    }

    #[test]
    fn uk_and_french_and_unknown_layouts() {
        let mut uk = InputDecoder::new(0x809);
        let mut evs = Vec::new();
        evs.extend(shifted(0x03)); // "
        evs.extend(shifted(0x04)); // £
        evs.extend(shifted(0x28)); // @
        evs.extend(tap(0x2B)); // #
        evs.extend(tap(0x1E)); // a
        assert_eq!(typed(&run(&mut uk, &evs)), "\"£@#a");

        let mut fr = InputDecoder::new(0x40C);
        let mut evs = Vec::new();
        evs.extend(tap(0x10)); // a
        evs.extend(tap(0x11)); // z
        evs.extend(tap(0x27)); // m
        evs.extend(tap(0x02)); // &
        evs.extend(shifted(0x02)); // 1
        evs.extend(tap(0x1A)); // ^ dead
        evs.extend(tap(0x12)); // ê
        assert_eq!(typed(&run(&mut fr, &evs)), "azm&1ê");

        // Russian: letters depend on the layout, nothing is typed, keys are named as US.
        let mut ru = InputDecoder::new(0x419);
        let out = run(&mut ru, &tap(0x1E));
        assert_eq!(
            out[0],
            Input::Key {
                key: "a".into(),
                ch: None,
                down: true
            }
        );
        // Italian: letters and space are recorded, the digits row is not.
        let mut it = InputDecoder::new(0x410);
        let mut evs = Vec::new();
        evs.extend(tap(0x1E));
        evs.extend(tap(0x39));
        evs.extend(tap(0x02));
        evs.extend(tap(0x1C));
        let out = run(&mut it, &evs);
        assert_eq!(typed(&out), "a \n");
        assert_eq!(names(&out)[4], ("1".to_string(), true));
        // Swiss German is QWERTZ.
        let mut ch = InputDecoder::new(0x807);
        assert_eq!(typed(&run(&mut ch, &tap(0x15))), "z");
        // A layout variant (US Dvorak) records no letters.
        let mut dv = InputDecoder::new(0x1_0409);
        assert_eq!(typed(&run(&mut dv, &tap(0x1E))), "");
        // A whole HKL is read as its layout.
        let mut hkl = InputDecoder::new(0x0407_0407);
        assert_eq!(typed(&run(&mut hkl, &tap(0x15))), "z");
    }

    #[test]
    fn shortcuts_type_nothing() {
        let mut dec = InputDecoder::new(0x409);
        let out = run(
            &mut dec,
            &[
                Ev::Key(0x1D, false, true),
                Ev::Key(0x2E, false, true),
                Ev::Key(0x2E, false, false),
                Ev::Key(0x1D, false, false),
                Ev::Key(0x2E, false, true),
            ],
        );
        assert_eq!(
            out[1],
            Input::Key {
                key: "c".into(),
                ch: None,
                down: true
            }
        );
        assert_eq!(typed(&out), "c");
        // On US, right Alt is plain Alt.
        let out = run(
            &mut dec,
            &[Ev::Key(0x38, true, true), Ev::Key(0x10, false, true)],
        );
        assert_eq!(names(&out)[0].0, "Alt_R");
        assert_eq!(typed(&out), "");
    }

    #[test]
    fn extended_and_special_keys() {
        let mut dec = InputDecoder::new(0x409);
        let out = run(
            &mut dec,
            &[
                Ev::Key(0x4B, true, true),
                Ev::Key(0x4D, true, true),
                Ev::Key(0x48, true, true),
                Ev::Key(0x50, true, true),
                Ev::Key(0x53, true, true),
                Ev::Key(0x47, true, true),
                Ev::Key(0x1D, true, true),
                Ev::Key(0x1D, true, false),
                Ev::Key(0x1C, true, true),
                Ev::Key(0x35, true, true),
                Ev::Key(0x5B, true, true),
                Ev::Key(0x5B, true, false),
                Ev::Key(0x3F, false, true),
                Ev::Key(0x0E, false, true),
                Ev::Key(0x01, false, true),
                Ev::Key(0x0F, false, true),
                Ev::Key(0x2A, true, true), // fake shift: ignored
                Ev::Key(0x7E, false, true),
            ],
        );
        let n: Vec<String> = names(&out)
            .into_iter()
            .filter(|(_, d)| *d)
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            n,
            [
                "Left",
                "Right",
                "Up",
                "Down",
                "Delete",
                "Home",
                "Control_R",
                "KP_Enter",
                "KP_Divide",
                "Super_L",
                "F5",
                "BackSpace",
                "Escape",
                "Tab",
                "sc_0x7e"
            ]
        );
        assert_eq!(typed(&out), "\n/\t");
    }

    #[test]
    fn keypad_follows_num_lock_and_pause_is_not_num_lock() {
        let mut dec = InputDecoder::new(0x409);
        let out = run(&mut dec, &tap(0x4B));
        assert_eq!(names(&out)[0].0, "KP_Left");
        assert_eq!(typed(&out), "");
        let mut evs = tap(0x45).to_vec(); // Num Lock on
        evs.extend(tap(0x4B));
        evs.extend(tap(0x53));
        evs.extend(tap(0x4E));
        let out = run(&mut dec, &evs);
        assert_eq!(names(&out)[2].0, "KP_4");
        assert_eq!(typed(&out), "4.+");
        assert!(dec.num_lock());
        // Pause: E1 1D, 45 — one key, Num Lock unchanged.
        let pause = |down: bool| {
            let mut f = FastPathKeyFlags::EXTENDED1;
            f.set(FastPathKeyFlags::RELEASE, !down);
            FastPathInputEvent::KeyboardEvent(f, 0x1D)
        };
        let events = vec![
            pause(true),
            fast_event(Ev::Key(0x45, false, true)),
            pause(false),
            fast_event(Ev::Key(0x45, false, false)),
        ];
        let frame = fp_frame(&events);
        let out = dec.fast_path(&frame).unwrap();
        assert_eq!(
            names(&out),
            [("Pause".to_string(), true), ("Pause".to_string(), false)]
        );
        assert!(dec.num_lock());
    }

    #[test]
    fn unicode_events() {
        let mut dec = InputDecoder::new(0x409);
        let smile: Vec<u16> = "😀".encode_utf16().collect();
        let out = run(
            &mut dec,
            &[
                Ev::Uni(u16::from(b'a'), true),
                Ev::Uni(u16::from(b'a'), false),
                Ev::Uni(0x20AC, true),
                Ev::Uni(u16::from(b' '), true),
                Ev::Uni(smile[0], true),
                Ev::Uni(smile[1], true),
                Ev::Uni(smile[0], false),
                Ev::Uni(smile[1], false),
                Ev::Uni(0x0D, true),
                Ev::Uni(0xDC00, true),
            ],
        );
        assert_eq!(
            out[0],
            Input::Key {
                key: "a".into(),
                ch: Some('a'),
                down: true
            }
        );
        assert_eq!(
            out[1],
            Input::Key {
                key: "a".into(),
                ch: Some('a'),
                down: false
            }
        );
        assert_eq!(
            out[2],
            Input::Key {
                key: "€".into(),
                ch: Some('€'),
                down: true
            }
        );
        assert_eq!(names(&out)[3].0, "space");
        assert_eq!(out.len(), 8);
        assert_eq!(typed(&out), "a€ 😀\n");
        assert_eq!(names(&out)[6].0, "Return");
        assert_eq!(
            out[7],
            Input::Key {
                key: "U+DC00".into(),
                ch: None,
                down: true
            }
        );
    }

    #[test]
    fn mouse_buttons_moves_and_wheel() {
        let mut dec = InputDecoder::new(0x409);
        const MOVE: u16 = 0x0800;
        const DOWN: u16 = 0x8000;
        const LEFT: u16 = 0x1000;
        const RIGHT: u16 = 0x2000;
        const MIDDLE: u16 = 0x4000;
        const WHEEL: u16 = 0x0200;
        const HWHEEL: u16 = 0x0400;
        assert_eq!(dec.pointer_position(), None);
        let out = run(
            &mut dec,
            &[
                Ev::Mouse(MOVE, 0, 100, 200),
                Ev::Mouse(MOVE, 0, 100, 200),
                Ev::Mouse(LEFT | DOWN, 0, 100, 200),
                Ev::Mouse(LEFT, 0, 101, 200),
                Ev::Mouse(MOVE, 0, 101, 200),
                Ev::Mouse(MOVE, 0, 110, 210),
                Ev::Mouse(RIGHT | DOWN, 0, 110, 210),
                Ev::Mouse(MIDDLE | DOWN, 0, 110, 210),
                Ev::MouseX(0x0001 | DOWN, 110, 210),
                Ev::MouseX(0x0002, 110, 210),
                Ev::Mouse(WHEEL, 40, 0, 0),
                Ev::Mouse(WHEEL, 40, 0, 0),
                Ev::Mouse(WHEEL, 40, 0, 0),
                Ev::Mouse(WHEEL, -240, 0, 0),
                Ev::Mouse(HWHEEL, 120, 0, 0),
            ],
        );
        let b = |button, down, x, y| Input::Button { button, down, x, y };
        assert_eq!(
            out,
            [
                Input::Pointer { x: 100, y: 200 },
                b(1, true, 100, 200),
                b(1, false, 101, 200),
                Input::Pointer { x: 101, y: 200 },
                Input::Pointer { x: 110, y: 210 },
                b(3, true, 110, 210),
                b(2, true, 110, 210),
                b(8, true, 110, 210),
                b(9, false, 110, 210),
                Input::Wheel { dx: 0, dy: -1 },
                Input::Wheel { dx: 0, dy: 2 },
                Input::Wheel { dx: 1, dy: 0 },
            ]
        );
        // The wheel event's (unused) coordinates do not move the pointer.
        assert_eq!(dec.pointer_position(), Some((110, 210)));
    }

    #[test]
    fn relative_mouse_moves_known_position() {
        let mut dec = InputDecoder::new(0x409);
        let rel = |flags: u16, dx: i16, dy: i16| {
            FastPathInputEvent::MouseEventRel(MouseRelPdu {
                flags: PointerRelFlags::from_bits_retain(flags),
                x_delta: dx,
                y_delta: dy,
            })
        };
        let frame = |events: Vec<FastPathInputEvent>| fp_frame(&events);
        // No absolute position yet: the move is ignored, the click is still recorded.
        let out = dec
            .fast_path(&frame(vec![rel(0x0800, 5, 5), rel(0x9000, 0, 0)]))
            .unwrap();
        assert_eq!(
            out,
            [Input::Button {
                button: 1,
                down: true,
                x: 0,
                y: 0
            }]
        );
        run(&mut dec, &[Ev::Mouse(0x0800, 0, 10, 10)]);
        let out = dec.fast_path(&frame(vec![rel(0x0800, 5, -20)])).unwrap();
        assert_eq!(out, [Input::Pointer { x: 15, y: 0 }]);
        assert_eq!(dec.pointer_position(), Some((15, 0)));
    }

    #[test]
    fn slow_path_matches_fast_path() {
        let mut evs = hello_world();
        evs.extend([
            Ev::Sync(true, true),
            Ev::Key(0x1E, false, true),
            Ev::Key(0x4B, true, true),
            Ev::Uni(0x20AC, true),
            Ev::Mouse(0x0800, 0, 7, 9),
            Ev::Mouse(0x9000, 0, 7, 9),
            Ev::Mouse(0x0200, 120, 0, 0),
            Ev::MouseX(0x8002, 7, 9),
        ]);
        let fast = InputDecoder::new(0x407)
            .fast_path(&fast_frame(&evs))
            .unwrap();
        let mut slow_dec = InputDecoder::new(0x407);
        let slow = slow_dec.slow_path(&slow_frame(&evs)).unwrap();
        assert_eq!(slow.as_deref(), Some(fast.as_slice()));
        // Every event but the synchronize one is recorded.
        assert_eq!(fast.len(), evs.len() - 1);
        assert_eq!(slow_dec.pointer_position(), Some((7, 9)));

        // Restricted to the I/O channel, input on another channel is not input.
        slow_dec.set_io_channel(Some(1003));
        assert!(slow_dec.slow_path(&slow_frame(&evs)).unwrap().is_some());
        slow_dec.set_io_channel(Some(1004));
        assert_eq!(slow_dec.slow_path(&slow_frame(&evs)).unwrap(), None);
    }

    #[test]
    fn non_input_slow_path_frames() {
        let mut dec = InputDecoder::new(0x409);
        let sync = share_data_frame(
            ShareDataPdu::Synchronize(SynchronizePdu {
                target_user_id: 1007,
            }),
            1003,
        );
        assert_eq!(dec.slow_path(&sync).unwrap(), None);
        let join = encode_vec(&X224(ChannelJoinRequest {
            initiator_id: 1007,
            channel_id: 1003,
        }))
        .unwrap();
        assert_eq!(dec.slow_path(&join).unwrap(), None);
        // X.224 Connection Request.
        let cr = [
            0x03, 0x00, 0x00, 0x13, 0x0E, 0xE0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x08,
            0x00, 0x03, 0x00, 0x00, 0x00,
        ];
        assert_eq!(dec.slow_path(&cr).unwrap(), None);
        // A virtual channel PDU (CHANNEL_PDU_HEADER first).
        let vc = encode_vec(&X224(SendDataRequest {
            initiator_id: 1007,
            channel_id: 1004,
            user_data: Cow::Owned(vec![
                8, 0, 0, 0, 3, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
            ]),
        }))
        .unwrap();
        assert_eq!(dec.slow_path(&vc).unwrap(), None);
        // A fast-path frame is not a slow-path frame.
        assert_eq!(dec.slow_path(&fast_frame(&hello_world())).unwrap(), None);
        assert_eq!(dec.slow_path(&[]), Err(InputError::Empty));
        // A TPKT whose length disagrees with the frame.
        let mut short = slow_frame(&hello_world());
        short.pop();
        assert!(matches!(
            dec.slow_path(&short),
            Err(InputError::Length { .. })
        ));
    }

    #[test]
    fn hand_built_input_pdu_decodes() {
        // One scancode event: eventTime, messageType 0x0004, keyboardFlags, keyCode, pad.
        let body = [0, 0, 0, 0, 4, 0, 0, 0, 0x1E, 0, 0, 0];
        let out = InputDecoder::new(0x409)
            .slow_path(&raw_input_frame(1, &body))
            .unwrap()
            .unwrap();
        assert_eq!(typed(&out), "a");
        // More events announced than present.
        assert!(matches!(
            InputDecoder::new(0x409).slow_path(&raw_input_frame(2, &body)),
            Err(InputError::Malformed { .. })
        ));
    }

    #[test]
    fn compressed_input_is_an_error() {
        let mut frame = slow_frame(&tap(0x1E));
        // TPKT(4) + X.224(3) + MCS header(1+2+2+1+1) + Share Control(6) + offset 9 in the Share
        // Data header = compressedType.
        let at = 7 + 7 + 6 + 9;
        assert_eq!(frame[at - 1], PDUTYPE2_INPUT);
        frame[at] |= PACKET_COMPRESSED;
        assert_eq!(
            InputDecoder::new(0x409).slow_path(&frame),
            Err(InputError::Compressed)
        );
    }

    #[test]
    fn fast_path_errors() {
        let mut dec = InputDecoder::new(0x409);
        assert_eq!(dec.fast_path(&[]), Err(InputError::Empty));
        let slow = slow_frame(&tap(0x1E));
        assert_eq!(dec.fast_path(&slow), Err(InputError::NotFastPath(3)));
        assert_eq!(
            dec.fast_path(&[0xC4, 3, 0]),
            Err(InputError::Encrypted(0xC4))
        );
        // A declared length shorter than the header itself.
        assert!(matches!(
            dec.fast_path(&[0x04, 0x00]),
            Err(InputError::Length { .. })
        ));
        assert!(matches!(
            dec.fast_path(&[0x00, 0x02]),
            Err(InputError::Length { .. })
        ));
        // Truncated event.
        assert!(matches!(
            dec.fast_path(&[0x04, 0x03, 0x20]),
            Err(InputError::Malformed { .. })
        ));
        let mut frame = fast_frame(&hello_world());
        frame.push(0);
        assert!(matches!(
            dec.fast_path(&frame),
            Err(InputError::Length { .. })
        ));
    }

    #[test]
    fn held_keys_and_buttons_and_their_releases() {
        let mut dec = InputDecoder::new(0x409);
        const DOWN: u16 = 0x8000;
        const LEFT: u16 = 0x1000;
        const RIGHT: u16 = 0x2000;
        run(
            &mut dec,
            &[
                Ev::Key(SHIFT_L, false, true),
                Ev::Key(0x1E, false, true),
                Ev::Key(0x4B, true, true), // Left arrow (extended)
                Ev::Key(0x30, false, true),
                Ev::Key(0x30, false, false),
                Ev::Mouse(0x0800, 0, 40, 50),
                Ev::Mouse(LEFT | DOWN, 0, 40, 50),
                Ev::Mouse(RIGHT | DOWN, 0, 40, 50),
                Ev::Mouse(RIGHT, 0, 40, 50),
                Ev::MouseX(0x0002 | DOWN, 41, 50),
            ],
        );
        assert_eq!(
            dec.held_keys(),
            [(0x1E, false), (SHIFT_L, false), (0x4B, true)]
        );
        assert_eq!(dec.held_buttons(), [1, 9]);
        let releases = dec.releases();
        let release = |sc, ext| {
            let mut f = FastPathKeyFlags::RELEASE;
            f.set(FastPathKeyFlags::EXTENDED, ext);
            FastPathInputEvent::KeyboardEvent(f, sc)
        };
        assert_eq!(
            releases,
            [
                release(0x1E, false),
                release(0x4B, true),
                release(SHIFT_L, false),
                FastPathInputEvent::MouseEvent(MousePdu {
                    flags: PointerFlags::LEFT_BUTTON,
                    number_of_wheel_rotation_units: 0,
                    x_position: 41,
                    y_position: 50,
                }),
                FastPathInputEvent::MouseEventEx(MouseXPdu {
                    flags: PointerXFlags::BUTTON2,
                    x_position: 41,
                    y_position: 50,
                }),
            ]
        );
        // Asking changes nothing; taking the sent releases in leaves nothing held, records
        // nothing, and keeps the pointer where it was.
        assert_eq!(dec.held_buttons(), [1, 9]);
        dec.apply_sent(&releases);
        assert!(dec.held_keys().is_empty());
        assert!(dec.held_buttons().is_empty());
        assert!(dec.releases().is_empty());
        assert_eq!(dec.pointer_position(), Some((41, 50)));
        // Shift is up again: the next key types lower case.
        assert_eq!(typed(&run(&mut dec, &tap(0x1E))), "a");
    }

    #[test]
    fn buttons_pressed_without_a_position_are_released_relatively() {
        let mut dec = InputDecoder::new(0x409);
        let rel = |flags: u16| {
            FastPathInputEvent::MouseEventRel(MouseRelPdu {
                flags: PointerRelFlags::from_bits_retain(flags),
                x_delta: 3,
                y_delta: 4,
            })
        };
        // Button 1 and button 3 (right: BUTTON2 in relative events) down, X1 down then up.
        dec.fast_path(&fp_frame(&[
            rel(0x9000),
            rel(0xA000),
            rel(0x8001),
            rel(0x0001),
        ]))
        .unwrap();
        assert_eq!(dec.held_buttons(), [1, 3]);
        let releases = dec.releases();
        assert_eq!(
            releases,
            [
                FastPathInputEvent::MouseEventRel(MouseRelPdu {
                    flags: PointerRelFlags::BUTTON1,
                    x_delta: 0,
                    y_delta: 0,
                }),
                FastPathInputEvent::MouseEventRel(MouseRelPdu {
                    flags: PointerRelFlags::BUTTON2,
                    x_delta: 0,
                    y_delta: 0,
                }),
            ]
        );
        dec.apply_sent(&releases);
        assert!(dec.held_buttons().is_empty());
    }

    #[test]
    fn encoded_fast_path_frames_decode() {
        assert!(encode_fast_path(&[]).unwrap().is_empty());
        for n in [1usize, 15, 16, 40, 300] {
            let events: Vec<FastPathInputEvent> = (0..n)
                .map(|i| {
                    let sc = u8::try_from(i % 0x50).unwrap() + 2;
                    fast_event(Ev::Key(sc, i % 3 == 0, i % 2 == 0))
                })
                .collect();
            let frames = encode_fast_path(&events).unwrap();
            assert_eq!(frames.len(), n.div_ceil(255), "{n} events");
            let mut decoded = Vec::new();
            for frame in &frames {
                let input: FastPathInput = ironrdp_core::decode(frame).unwrap();
                decoded.extend_from_slice(input.input_events());
                // psmgate's own decoder reads them too.
                assert!(InputDecoder::new(0x409).fast_path(frame).is_ok());
            }
            assert_eq!(decoded, events, "{n} events");
        }
    }

    #[test]
    fn encoded_slow_path_input_decodes() {
        let events = [
            fast_event(Ev::Key(0x1E, false, false)),
            fast_event(Ev::Key(0x1D, true, false)),
            fast_event(Ev::Mouse(0x1000, 0, 7, 9)),
            fast_event(Ev::MouseX(0x0001, 7, 9)),
            fast_event(Ev::Uni(0x20AC, false)),
            fast_event(Ev::Sync(true, false)),
            FastPathInputEvent::QoeEvent(5),
        ];
        let route = SlowPathRoute {
            user_channel: 1007,
            io_channel: 1003,
            share_id: 0x0001_03EA,
        };
        let frame = encode_slow_path(&events, route).unwrap().unwrap();
        let mut dec = InputDecoder::new(0x409);
        dec.set_io_channel(Some(1003));
        let decoded = dec.slow_path_events(&frame).unwrap().unwrap();
        let expected: Vec<InputEvent> = events.iter().filter_map(to_slow_path).collect();
        assert_eq!(decoded, expected);
        assert_eq!(decoded.len(), 6, "the QoE timestamp has no slow-path form");
        // The same events read the same way on either path.
        let mut fast = InputDecoder::new(0x409);
        let mut slow = InputDecoder::new(0x409);
        let events = &events[..6];
        assert_eq!(
            fast.fast_path(&fp_frame(events)).unwrap(),
            slow.slow_path(&frame).unwrap().unwrap()
        );
        assert!(encode_slow_path(&[FastPathInputEvent::QoeEvent(1)], route)
            .unwrap()
            .is_none());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut dec = InputDecoder::new(0x407);
            let _ = dec.fast_path(&bytes);
            let _ = dec.slow_path(&bytes);
        }

        #[test]
        fn arbitrary_fast_path_bodies_never_panic(
            header in any::<u8>(),
            body in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut frame = vec![header & 0x3C];
            let len = body.len() + 3;
            frame.push(0x80 | u8::try_from(len >> 8).unwrap());
            frame.push(u8::try_from(len & 0xFF).unwrap());
            frame.extend_from_slice(&body);
            let mut dec = InputDecoder::new(0x40C);
            let _ = dec.fast_path(&frame);
        }

        #[test]
        fn arbitrary_input_pdu_bodies_never_panic(
            body in proptest::collection::vec(any::<u8>(), 0..200),
            count in any::<u16>(),
        ) {
            let mut dec = InputDecoder::new(0x409);
            let _ = dec.slow_path(&raw_input_frame(count, &body));
        }

        #[test]
        fn arbitrary_share_data_never_panics(
            mut data in proptest::collection::vec(any::<u8>(), 0..120),
        ) {
            // Steer arbitrary user data towards the Input PDU path.
            if let Some(t) = data.get_mut(2..4) {
                t.copy_from_slice(&[0x17, 0x00]);
            }
            if let Some(t) = data.get_mut(14) {
                *t = PDUTYPE2_INPUT;
            }
            let frame = encode_vec(&X224(SendDataRequest {
                initiator_id: 1007,
                channel_id: 1003,
                user_data: Cow::Owned(data),
            }))
            .unwrap();
            let mut dec = InputDecoder::new(0x809);
            let _ = dec.slow_path(&frame);
        }

        #[test]
        fn arbitrary_event_sequences_never_panic(
            events in proptest::collection::vec((any::<u8>(), any::<u8>(), any::<u16>()), 1..60),
        ) {
            let events: Vec<FastPathInputEvent> = events
                .into_iter()
                .map(|(kind, flags, value)| {
                    let flags = flags & 0x07;
                    match kind % 4 {
                        0 => FastPathInputEvent::KeyboardEvent(
                            FastPathKeyFlags::from_bits_retain(flags),
                            value.to_le_bytes()[0],
                        ),
                        1 => FastPathInputEvent::UnicodeKeyboardEvent(
                            FastPathKeyFlags::from_bits_retain(flags),
                            value,
                        ),
                        2 => FastPathInputEvent::MouseEvent(MousePdu {
                            flags: PointerFlags::from_bits_retain(value),
                            number_of_wheel_rotation_units: i16::from(flags) * 37 - 128,
                            x_position: value,
                            y_position: value,
                        }),
                        _ => FastPathInputEvent::SyncEvent(SynchronizeFlags::from_bits_retain(flags)),
                    }
                })
                .collect();
            let frame = fp_frame(&events);
            for layout in [0x409, 0x407, 0x809, 0x40C, 0x419, 0x410] {
                let mut dec = InputDecoder::new(layout);
                prop_assert!(dec.fast_path(&frame).is_ok());
            }
        }
    }
}
