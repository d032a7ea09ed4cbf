//! What of a viewer's input reaches the target, lock or no lock (sans-I/O).
//!
//! Unlocked, everything passes and the gate only keeps track of what the target saw pressed.
//! Locked (an operator's lock, see `crate::live::LockRequest`), key presses, pointer moves and
//! presses, and clipboard text are held back; a release of a key or button the target saw
//! pressed still passes, so nothing stays held down on the target while the user is locked
//! out. When the lock is lifted, input passes again from the next message on.

use std::collections::HashSet;

/// Keys held at once that the gate tracks; more are not remembered (their releases then pass
/// only while unlocked). A viewer holds a handful at most.
const MAX_HELD: usize = 256;

/// What to do with one viewer → target message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Forward it as it is.
    Pass,
    /// Hold it back.
    Drop,
    /// Forward a pointer event with this button mask instead (the buttons the target saw
    /// pressed that the viewer released, at the viewer's position).
    Pointer(u8),
}

/// The input gate of one session.
#[derive(Debug, Default)]
pub struct InputGate {
    locked: bool,
    held_keys: HashSet<u32>,
    target_buttons: u8,
}

impl InputGate {
    /// An open gate, nothing held.
    pub fn new() -> Self {
        Self::default()
    }

    /// Locks or unlocks the gate.
    pub fn set_locked(&mut self, locked: bool) {
        self.locked = locked;
    }

    /// Whether the gate is locked.
    pub fn is_locked(&self) -> bool {
        self.locked
    }

    /// A key event (`down`: pressed).
    pub fn key(&mut self, keysym: u32, down: bool) -> Verdict {
        if down {
            if self.locked {
                return Verdict::Drop;
            }
            if self.held_keys.len() < MAX_HELD {
                self.held_keys.insert(keysym);
            }
            Verdict::Pass
        } else if self.held_keys.remove(&keysym) || !self.locked {
            Verdict::Pass
        } else {
            Verdict::Drop
        }
    }

    /// A pointer event with button mask `mask`.
    pub fn pointer(&mut self, mask: u8) -> Verdict {
        if !self.locked {
            self.target_buttons = mask;
            return Verdict::Pass;
        }
        let still = self.target_buttons & mask;
        if still == self.target_buttons {
            return Verdict::Drop;
        }
        self.target_buttons = still;
        Verdict::Pointer(still)
    }

    /// Clipboard text from the viewer.
    pub fn cut_text(&self) -> Verdict {
        if self.locked {
            Verdict::Drop
        } else {
            Verdict::Pass
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn open_gate_passes_everything() {
        let mut g = InputGate::new();
        assert_eq!(g.key(0x61, true), Verdict::Pass);
        assert_eq!(g.key(0x61, false), Verdict::Pass);
        assert_eq!(g.key(0x62, false), Verdict::Pass);
        assert_eq!(g.pointer(1), Verdict::Pass);
        assert_eq!(g.pointer(0), Verdict::Pass);
        assert_eq!(g.cut_text(), Verdict::Pass);
    }

    #[test]
    fn locked_gate_holds_input_back_but_releases_what_the_target_holds() {
        let mut g = InputGate::new();
        assert_eq!(g.key(0xffe1, true), Verdict::Pass); // Shift held
        assert_eq!(g.pointer(0b101), Verdict::Pass); // buttons 1 and 3 held
        g.set_locked(true);
        assert_eq!(g.key(0x61, true), Verdict::Drop);
        assert_eq!(
            g.key(0x61, false),
            Verdict::Drop,
            "never pressed at the target"
        );
        assert_eq!(g.pointer(0b101), Verdict::Drop, "a move");
        assert_eq!(g.pointer(0b111), Verdict::Drop, "a new press");
        assert_eq!(
            g.pointer(0b110),
            Verdict::Pointer(0b100),
            "button 1 released"
        );
        assert_eq!(g.pointer(0b110), Verdict::Drop);
        assert_eq!(g.pointer(0), Verdict::Pointer(0), "button 3 released");
        assert_eq!(g.pointer(1), Verdict::Drop);
        assert_eq!(g.key(0xffe1, false), Verdict::Pass, "Shift released");
        assert_eq!(g.key(0xffe1, false), Verdict::Drop, "released once only");
        assert_eq!(g.cut_text(), Verdict::Drop);
        g.set_locked(false);
        assert_eq!(g.key(0x61, true), Verdict::Pass);
        assert_eq!(g.pointer(1), Verdict::Pass);
        assert_eq!(g.cut_text(), Verdict::Pass);
    }

    #[derive(Debug, Clone)]
    enum Msg {
        Key(u32, bool),
        Pointer(u8),
        Lock(bool),
    }

    fn msg() -> impl Strategy<Value = Msg> {
        prop_oneof![
            (0u32..6, any::<bool>()).prop_map(|(k, d)| Msg::Key(k, d)),
            (0u8..8).prop_map(Msg::Pointer),
            any::<bool>().prop_map(Msg::Lock),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Whatever the viewer sends and however the lock changes: while locked nothing is
        /// pressed at the target, and what the target holds is always what it was told.
        #[test]
        fn nothing_is_pressed_at_the_target_while_locked(msgs in proptest::collection::vec(msg(), 0..64)) {
            let mut g = InputGate::new();
            let mut target_keys = HashSet::new();
            let mut target_buttons = 0u8;
            for m in msgs {
                match m {
                    Msg::Lock(l) => g.set_locked(l),
                    Msg::Key(k, down) => {
                        let v = g.key(k, down);
                        if v == Verdict::Pass {
                            if down {
                                prop_assert!(!g.is_locked(), "a press passed while locked");
                                target_keys.insert(k);
                            } else {
                                target_keys.remove(&k);
                            }
                        }
                    }
                    Msg::Pointer(mask) => {
                        let sent = match g.pointer(mask) {
                            Verdict::Pass => Some(mask),
                            Verdict::Pointer(m) => Some(m),
                            Verdict::Drop => None,
                        };
                        if let Some(sent) = sent {
                            if g.is_locked() {
                                prop_assert_eq!(sent & !target_buttons, 0, "a button pressed while locked");
                            }
                            target_buttons = sent;
                        }
                    }
                }
                prop_assert_eq!(&g.held_keys, &target_keys);
                prop_assert_eq!(g.target_buttons, target_buttons);
            }
        }
    }
}
