//! Bearer tokens for `sop mcp --http`: `sop_<system id>_<seed>`. The seed is a NATS user seed
//! made where the token is issued; the service keeps only its public key, and every command
//! and query made with the token is signed by that seed, as a system's own key would sign.

use uuid::Uuid;

const PREFIX: &str = "sop_";

/// The token of `system` made from `seed`.
pub fn compose(system: Uuid, seed: &str) -> String {
    format!("{PREFIX}{}_{seed}", system.simple())
}

/// The system a token names, and its seed; `None` for a string of another shape.
pub fn parse(token: &str) -> Option<(Uuid, &str)> {
    let (system, seed) = token.trim().strip_prefix(PREFIX)?.split_once('_')?;
    let system = Uuid::try_parse(system).ok()?;
    seed.starts_with("SU").then_some((system, seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_system_and_carries_its_seed() {
        let pair = nkeys::KeyPair::new_user();
        let seed = pair.seed().unwrap();
        let system = Uuid::now_v7();
        let token = compose(system, &seed);
        assert_eq!(parse(&token), Some((system, seed.as_str())));
        assert_eq!(parse("Bearer nope"), None);
        assert_eq!(parse(&format!("sop_{}_XX", system.simple())), None);
        assert_eq!(parse("sop_notauuid_SUAB"), None);
    }
}
