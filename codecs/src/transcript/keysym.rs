//! X11 keysyms (as RFB sends them) to key names and printable characters.
//!
//! Names follow X11's `keysymdef.h` spelling so transcripts read the same for every protocol;
//! RDP scancodes are mapped onto the same names by the RDP gateway.

/// Name and printable character of a keysym. Unknown keysyms are named `0x…`.
pub fn describe(keysym: u32) -> (String, Option<char>) {
    if let Some(name) = special(keysym) {
        let ch = match keysym {
            0xff0d | 0xff8d => Some('\n'),
            0xff09 => Some('\t'),
            0xffaa..=0xffb9 => keypad_char(keysym),
            _ => None,
        };
        return (name.to_string(), ch);
    }
    let ch = match keysym {
        0x20..=0x7e | 0xa0..=0xff => char::from_u32(keysym),
        0x0100_0100..=0x0110_ffff => char::from_u32(keysym - 0x0100_0000),
        _ => None,
    };
    match ch {
        Some(c) => (
            latin_name(c)
                .map(str::to_string)
                .unwrap_or_else(|| c.to_string()),
            Some(c),
        ),
        None => (format!("0x{keysym:x}"), None),
    }
}

/// The keysym a character is typed with (inverse of [`describe`] for printable characters).
pub fn from_char(c: char) -> u32 {
    match c {
        '\n' | '\r' => 0xff0d,
        '\t' => 0xff09,
        ' '..='~' | '\u{a0}'..='\u{ff}' => c as u32,
        _ => 0x0100_0000 + c as u32,
    }
}

fn keypad_char(keysym: u32) -> Option<char> {
    match keysym {
        0xffaa => Some('*'),
        0xffab => Some('+'),
        0xffad => Some('-'),
        0xffae => Some('.'),
        0xffaf => Some('/'),
        0xffb0..=0xffb9 => char::from_digit(keysym - 0xffb0, 10),
        _ => None,
    }
}

fn latin_name(c: char) -> Option<&'static str> {
    Some(match c {
        ' ' => "space",
        '!' => "exclam",
        '"' => "quotedbl",
        '#' => "numbersign",
        '$' => "dollar",
        '%' => "percent",
        '&' => "ampersand",
        '\'' => "apostrophe",
        '(' => "parenleft",
        ')' => "parenright",
        '*' => "asterisk",
        '+' => "plus",
        ',' => "comma",
        '-' => "minus",
        '.' => "period",
        '/' => "slash",
        ':' => "colon",
        ';' => "semicolon",
        '<' => "less",
        '=' => "equal",
        '>' => "greater",
        '?' => "question",
        '@' => "at",
        '[' => "bracketleft",
        '\\' => "backslash",
        ']' => "bracketright",
        '^' => "asciicircum",
        '_' => "underscore",
        '`' => "grave",
        '{' => "braceleft",
        '|' => "bar",
        '}' => "braceright",
        '~' => "asciitilde",
        _ => return None,
    })
}

fn special(keysym: u32) -> Option<&'static str> {
    Some(match keysym {
        0xff08 => "BackSpace",
        0xff09 => "Tab",
        0xff0d => "Return",
        0xff13 => "Pause",
        0xff14 => "Scroll_Lock",
        0xff1b => "Escape",
        0xff50 => "Home",
        0xff51 => "Left",
        0xff52 => "Up",
        0xff53 => "Right",
        0xff54 => "Down",
        0xff55 => "Page_Up",
        0xff56 => "Page_Down",
        0xff57 => "End",
        0xff61 => "Print",
        0xff63 => "Insert",
        0xff67 => "Menu",
        0xff7f => "Num_Lock",
        0xff8d => "KP_Enter",
        0xffaa => "KP_Multiply",
        0xffab => "KP_Add",
        0xffad => "KP_Subtract",
        0xffae => "KP_Decimal",
        0xffaf => "KP_Divide",
        0xffb0 => "KP_0",
        0xffb1 => "KP_1",
        0xffb2 => "KP_2",
        0xffb3 => "KP_3",
        0xffb4 => "KP_4",
        0xffb5 => "KP_5",
        0xffb6 => "KP_6",
        0xffb7 => "KP_7",
        0xffb8 => "KP_8",
        0xffb9 => "KP_9",
        0xffbe => "F1",
        0xffbf => "F2",
        0xffc0 => "F3",
        0xffc1 => "F4",
        0xffc2 => "F5",
        0xffc3 => "F6",
        0xffc4 => "F7",
        0xffc5 => "F8",
        0xffc6 => "F9",
        0xffc7 => "F10",
        0xffc8 => "F11",
        0xffc9 => "F12",
        0xffe1 => "Shift_L",
        0xffe2 => "Shift_R",
        0xffe3 => "Control_L",
        0xffe4 => "Control_R",
        0xffe5 => "Caps_Lock",
        0xffe7 => "Meta_L",
        0xffe8 => "Meta_R",
        0xffe9 => "Alt_L",
        0xffea => "Alt_R",
        0xffeb => "Super_L",
        0xffec => "Super_R",
        0xffff => "Delete",
        0xfe03 => "ISO_Level3_Shift",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_chars() {
        assert_eq!(describe(0x61), ("a".into(), Some('a')));
        assert_eq!(describe(0x41), ("A".into(), Some('A')));
        assert_eq!(describe(0x20), ("space".into(), Some(' ')));
        assert_eq!(describe(0xff0d), ("Return".into(), Some('\n')));
        assert_eq!(describe(0xffe1), ("Shift_L".into(), None));
        assert_eq!(describe(0xffb7), ("KP_7".into(), Some('7')));
        assert_eq!(describe(0xe9), ("é".into(), Some('é')));
        assert_eq!(describe(0x0100_20ac), ("€".into(), Some('€')));
        assert_eq!(describe(0x1234), ("0x1234".into(), None));
    }

    #[test]
    fn from_char_round_trips() {
        for c in "Hello, wörld! ~€\t".chars() {
            assert_eq!(describe(from_char(c)).1, Some(c));
        }
    }
}
