//! The difficulty policy: a node mines harder when its host is busy with other work.
//!
//! The original projects raised difficulty with CPU load so that a loaded machine does not flood
//! the network with blocks it cannot check. We keep the idea, but the load is the host's load that
//! is *not* the node's own miner (otherwise mining would raise its own difficulty), and the result
//! is declared in the header, so every node checks the block against what it claims.

/// The most extra bits the policy adds on a fully loaded host.
pub const MAX_EXTRA_BITS: u32 = 4;

/// The difficulty for a block mined while other processes use `other_load` of the host's CPU
/// (0.0 idle to 1.0 every core busy; values outside are clamped, NaN counts as idle).
///
/// `floor + round(load * 4)`: +0 bits below 12.5%, +1 from 12.5%, ..., +4 from 87.5%.
pub fn difficulty_for_load(floor: u32, other_load: f32) -> u32 {
    let load = if other_load.is_nan() {
        0.0
    } else {
        other_load.clamp(0.0, 1.0)
    };
    floor + (load * MAX_EXTRA_BITS as f32).round() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn difficulty_rises_with_load_from_floor_to_floor_plus_four() {
        assert_eq!(difficulty_for_load(20, 0.0), 20);
        assert_eq!(difficulty_for_load(20, 0.1), 20);
        assert_eq!(difficulty_for_load(20, 0.5), 22);
        assert_eq!(difficulty_for_load(20, 1.0), 24);
        assert_eq!(difficulty_for_load(20, 7.0), 24);
        assert_eq!(difficulty_for_load(20, -1.0), 20);
        assert_eq!(difficulty_for_load(20, f32::NAN), 20);
        let mut last = 0;
        for step in 0..=100 {
            let d = difficulty_for_load(12, step as f32 / 100.0);
            assert!(d >= last);
            last = d;
        }
    }
}
