//! Tests of the repository itself, not of one crate: that the map in ARCHITECTURE.md names only
//! files and items that exist, so it cannot drift from the code it describes.

mod architecture;
