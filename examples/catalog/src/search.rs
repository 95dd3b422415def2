//! Search queries: normalised so that two spellings of one search share a cache key, and split
//! into the words a product name must hold.

use std::collections::BTreeSet;

/// A search: its distinct words, lowercase, sorted and separated by one space (at least one
/// word). A product matches when its name has every one of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search(String);

impl Search {
    /// `None` when `raw` holds no word.
    pub fn parse(raw: &str) -> Option<Self> {
        let normalised = Self::words_of(raw).collect::<Vec<_>>().join(" ");
        (!normalised.is_empty()).then_some(Self(normalised))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn words(&self) -> impl Iterator<Item = &str> {
        self.0.split(' ')
    }

    /// The distinct words of a query, as searches compare them.
    fn words_of(text: &str) -> impl Iterator<Item = String> {
        text.split_whitespace()
            .map(str::to_lowercase)
            .collect::<BTreeSet<_>>()
            .into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::Search;

    #[test]
    fn spellings_of_one_search_are_one_search() {
        let a = Search::parse("  LAMP   Brass lamp ").expect("words");
        assert_eq!(a.as_str(), "brass lamp");
        assert_eq!(a, Search::parse("brass lamp").expect("words"));
        assert_eq!(Search::parse(" \t "), None);
    }
}
