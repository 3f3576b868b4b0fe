//! The name rule: which shopper names the ledger accepts, and when two names are the same.
//!
//! Names are what people see, so two names that look alike must be one name. A name is
//! compared by its *key*: Unicode NFKC normalisation (fullwidth `ａｌｉｃｅ` and ligatures become
//! plain letters), then lowercase (`ALICE` is `alice`), then NFKC again (lowercasing can undo a
//! normal form), with runs of spaces made one. Characters that cannot be seen or that turn the
//! text around are refused outright, since no normalisation removes them: format characters
//! (general category Cf: zero-width space and joiners, the right-to-left override and the other
//! bidirectional controls, soft hyphen, tags), the other default-ignorable characters that draw
//! nothing (variation selectors, Hangul fillers, the combining grapheme joiner, the blank braille
//! pattern), line and paragraph separators, private-use, surrogate and unassigned code points
//! (an unassigned one may become anything in a later Unicode version), and control characters.
//! Every party runs the same rule, so a node refuses a join that breaks it like any other
//! invalid record.

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Why a name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name holds a character that cannot be seen or that changes the text's direction.
    #[error("name holds the invisible or direction-changing character {0}")]
    Invisible(String),
    /// The name is nothing but spaces once normalised.
    #[error("name is blank")]
    Blank,
}

/// Default-ignorable characters (they draw nothing) that are not format characters, so the
/// general category alone does not catch them, and the blank braille pattern, which draws a
/// blank. From Unicode's `DerivedCoreProperties.txt` (`Default_Ignorable_Code_Point`).
const INVISIBLE_RANGES: &[(char, char)] = &[
    ('\u{034F}', '\u{034F}'),   // combining grapheme joiner
    ('\u{115F}', '\u{1160}'),   // Hangul choseong and jungseong fillers
    ('\u{17B4}', '\u{17B5}'),   // Khmer inherent vowels
    ('\u{180B}', '\u{180F}'),   // Mongolian variation selectors and vowel separator
    ('\u{2800}', '\u{2800}'),   // braille pattern blank
    ('\u{3164}', '\u{3164}'),   // Hangul filler
    ('\u{FE00}', '\u{FE0F}'),   // variation selectors
    ('\u{FFA0}', '\u{FFA0}'),   // halfwidth Hangul filler
    ('\u{E0100}', '\u{E01EF}'), // variation selectors supplement
];

/// Whether `c` is refused in a name (see the module's documentation).
fn is_refused(c: char) -> bool {
    matches!(
        c.general_category(),
        GeneralCategory::Format
            | GeneralCategory::Control
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
            | GeneralCategory::PrivateUse
            | GeneralCategory::Surrogate
            | GeneralCategory::Unassigned
    ) || INVISIBLE_RANGES
        .iter()
        .any(|&(low, high)| (low..=high).contains(&c))
}

/// Checks a name against the rule: no invisible or direction-changing character, and something
/// left once normalised. Length and emptiness are checked with every text field
/// ([`crate::record::check_text`]).
pub fn check_name(name: &str) -> Result<(), NameError> {
    // The normal form too: NFKC can turn an allowed character into a refused one.
    for c in name.chars().chain(name.nfkc()) {
        if is_refused(c) {
            return Err(NameError::Invisible(format!("U+{:04X}", c as u32)));
        }
    }
    if name_key(name).is_empty() {
        return Err(NameError::Blank);
    }
    Ok(())
}

/// The key under which a name is unique: two names with one key are the same name.
pub fn name_key(name: &str) -> String {
    let folded: String = name.nfkc().flat_map(char::to_lowercase).nfkc().collect();
    folded.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_fold_case_width_and_spaces() {
        assert_eq!(name_key("Alice"), "alice");
        assert_eq!(name_key("ａｌｉｃｅ"), "alice");
        assert_eq!(name_key("ＡＬＩＣＥ"), "alice");
        assert_eq!(name_key("ﬁona"), "fiona");
        assert_eq!(name_key(" mary\u{3000}  ann "), "mary ann");
        // A composed and a decomposed é are one letter.
        assert_eq!(name_key("Ren\u{e9}"), name_key("Rene\u{301}"));
        assert_ne!(name_key("alice"), name_key("alicia"));
    }

    #[test]
    fn invisible_and_direction_changing_characters_are_refused() {
        for bad in [
            "alice\u{200B}",
            "\u{202E}ecila",
            "al\u{200D}ice",
            "al\u{00AD}ice",
            "alice\u{FE0F}",
            "alice\u{2066}",
            "\u{3164}",
            "ali\u{E0041}ce",
            "a\u{E000}",
        ] {
            assert!(
                matches!(check_name(bad), Err(NameError::Invisible(_))),
                "{bad:?}"
            );
        }
        for good in ["alice", "Zoë", "李雷", "mary ann", "o'brien", "ａｌｉｃｅ"] {
            assert_eq!(check_name(good), Ok(()), "{good:?}");
        }
        assert_eq!(check_name("\u{3000}"), Err(NameError::Blank));
    }
}
