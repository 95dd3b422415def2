//! Which schema versions of an entity hold keys, so that `invalidate` and `inspect` act on the
//! version the service uses rather than on a default, and refuse when that is not clear: an
//! invalidation of a version nobody reads is a silent no-op.

use std::collections::BTreeSet;

use crate::{Cli, Failure, connect_masters};

/// The versions with at least one key of `entity` under `app`: one `SCAN` pass over every
/// master.
pub(crate) async fn live_versions(
    cli: &Cli,
    app: &str,
    entity: &str,
) -> Result<BTreeSet<u32>, Failure> {
    cache_runtime::validate_name("app prefix", app)?;
    cache_runtime::validate_name("entity", entity)?;
    let pattern = format!("{app}:v*:{entity}:*");
    let mut versions = BTreeSet::new();
    for (_, mut node) in connect_masters(cli).await?.nodes {
        crate::write::scan(&mut node, &pattern, |keys| {
            versions.extend(keys.iter().filter_map(|key| version_of(key, app, entity)));
        })
        .await?;
    }
    Ok(versions)
}

/// The version of `key` if it is one of `entity`'s under `app` (`{app}:v{N}:{entity}:…`).
fn version_of(key: &str, app: &str, entity: &str) -> Option<u32> {
    let rest = key.strip_prefix(app)?.strip_prefix(":v")?;
    let (version, rest) = rest.split_once(':')?;
    rest.strip_prefix(entity)?.strip_prefix(':')?;
    version.parse().ok()
}

/// The version to act on: `given` if the entity has keys there; else the one version it has
/// keys at. Anything else is an error that says what is live (nothing is changed).
pub(crate) async fn resolve(
    cli: &Cli,
    app: &str,
    entity: &str,
    given: Option<u32>,
) -> Result<u32, Failure> {
    let live = live_versions(cli, app, entity).await?;
    choose(&live, app, entity, given)
}

fn choose(
    live: &BTreeSet<u32>,
    app: &str,
    entity: &str,
    given: Option<u32>,
) -> Result<u32, Failure> {
    let listed = || {
        live.iter()
            .map(|v| format!("v{v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if live.is_empty() {
        return Err(Failure(format!(
            "entity `{entity}` has no keys in app `{app}` at any version: check the names; nothing was changed"
        )));
    }
    match given {
        Some(version) if live.contains(&version) => Ok(version),
        Some(version) => Err(Failure(format!(
            "entity `{entity}` has no keys at v{version}; it has keys at {}: give one of them; nothing was changed",
            listed()
        ))),
        None if live.len() == 1 => {
            let version = *live.first().expect("one version");
            eprintln!(
                "cachectl: entity `{entity}` has keys at v{version} only: acting on v{version}"
            );
            Ok(version)
        }
        None => Err(Failure(format!(
            "entity `{entity}` has keys at {}: give --version (or CACHE_VERSION); nothing was changed",
            listed()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_entitys_own_keys_count() {
        assert_eq!(version_of("shop:v3:product:42", "shop", "product"), Some(3));
        assert_eq!(
            version_of("shop:v3:product:42:p2", "shop", "product"),
            Some(3)
        );
        assert_eq!(
            version_of("shop:v3:product:%mark", "shop", "product"),
            Some(3)
        );
        assert_eq!(
            version_of("shop:v3:product_list:4", "shop", "product"),
            None
        );
        assert_eq!(
            version_of("shop:v3:other:product:1", "shop", "product"),
            None
        );
        assert_eq!(version_of("shopx:v3:product:1", "shop", "product"), None);
        assert_eq!(version_of("shop:vx:product:1", "shop", "product"), None);
    }

    #[test]
    fn a_version_is_chosen_only_when_it_is_clear() {
        let live: BTreeSet<u32> = [2, 3].into();
        assert_eq!(choose(&live, "shop", "product", Some(3)).ok(), Some(3));
        assert!(choose(&live, "shop", "product", Some(1)).is_err());
        assert!(choose(&live, "shop", "product", None).is_err());
        assert_eq!(choose(&[3].into(), "shop", "product", None).ok(), Some(3));
        assert!(choose(&BTreeSet::new(), "shop", "product", Some(1)).is_err());
    }
}
