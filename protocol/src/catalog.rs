//! The monkey catalog: every kind the shop sells and its price. A consensus constant.

use serde::Serialize;

/// One kind of monkey for sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Monkey {
    /// The identifier records use, lowercase and hyphenated.
    pub id: &'static str,
    /// The name shown to people.
    pub name: &'static str,
    /// Price in coins.
    pub price: u64,
}

/// Every monkey for sale, cheapest first.
pub const CATALOG: [Monkey; 10] = [
    Monkey {
        id: "marmoset",
        name: "Pygmy marmoset",
        price: 50,
    },
    Monkey {
        id: "tamarin",
        name: "Golden lion tamarin",
        price: 80,
    },
    Monkey {
        id: "squirrel-monkey",
        name: "Squirrel monkey",
        price: 120,
    },
    Monkey {
        id: "capuchin",
        name: "Capuchin",
        price: 200,
    },
    Monkey {
        id: "howler",
        name: "Howler monkey",
        price: 300,
    },
    Monkey {
        id: "spider-monkey",
        name: "Spider monkey",
        price: 400,
    },
    Monkey {
        id: "macaque",
        name: "Japanese macaque",
        price: 500,
    },
    Monkey {
        id: "baboon",
        name: "Baboon",
        price: 650,
    },
    Monkey {
        id: "mandrill",
        name: "Mandrill",
        price: 800,
    },
    Monkey {
        id: "snub-nosed",
        name: "Golden snub-nosed monkey",
        price: 900,
    },
];

/// The poll the shop's "monkey of the month" vote uses.
pub const MONKEY_OF_THE_MONTH: &str = "monkey-of-the-month";

/// Looks a monkey up by its id.
pub fn monkey(id: &str) -> Option<&'static Monkey> {
    CATALOG.iter().find(|m| m.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_has_unique_ids_and_spans_50_to_900() {
        assert!(CATALOG.len() >= 8);
        let mut ids: Vec<_> = CATALOG.iter().map(|m| m.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), CATALOG.len());
        assert_eq!(CATALOG.iter().map(|m| m.price).min(), Some(50));
        assert_eq!(CATALOG.iter().map(|m| m.price).max(), Some(900));
        assert_eq!(monkey("capuchin").map(|m| m.price), Some(200));
        assert_eq!(monkey("unicorn"), None);
    }
}
