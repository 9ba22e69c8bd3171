//! Stable hashing for consistent balancing. Stable means: the same input gives the same hash in
//! every Portico process and version, so two instances behind ECMP with the same backend list
//! send a client to the same backend. (std's `DefaultHasher` makes no such promise.)

use std::net::IpAddr;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a over `bytes`, then a SplitMix64 finaliser so that nearby inputs spread well.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h = FNV_OFFSET;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    mix64(h)
}

/// SplitMix64's finaliser: a bijective avalanche of 64 bits.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The balancing key of a client: its IP address (the port is ignored so that every connection
/// of one client maps to one backend).
pub fn hash_ip(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => stable_hash(&v4.octets()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => stable_hash(&v4.octets()),
            None => stable_hash(&v6.octets()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_across_runs() {
        // Pinned values: changing them breaks consistent hashing between instances and versions.
        assert_eq!(stable_hash(b""), mix64(FNV_OFFSET));
        assert_eq!(
            hash_ip("10.0.0.1".parse().unwrap()),
            stable_hash(&[10, 0, 0, 1])
        );
    }

    #[test]
    fn mapped_v6_hashes_like_v4() {
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let v6: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(hash_ip(v4), hash_ip(v6));
    }
}
