//! How the shop lists things for people ("1 Capuchin, 2 Baboon", "no monkeys"): one rule for
//! the cage, the tally and the nodes tried, below both `error` and `outcome`.

/// `items` joined by `separator`, or `none` when there are none.
pub fn listing(items: impl IntoIterator<Item = String>, separator: &str, none: &str) -> String {
    let items: Vec<String> = items.into_iter().collect();
    if items.is_empty() {
        none.to_string()
    } else {
        items.join(separator)
    }
}
