//! Snapshot of a representative expansion, as `cargo expand` would show it.

use quote::quote;

fn pretty(tokens: proc_macro2::TokenStream) -> String {
    prettyplease::unparse(&syn::parse2(tokens).expect("expansion parses as a file"))
}

fn check_snapshot(name: &str, actual: &str) {
    let path = format!("{}/snapshots/{name}.rs", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, actual).expect("write snapshot");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        actual, expected,
        "expansion changed; review it and rerun with UPDATE_SNAPSHOTS=1 to accept"
    );
}

#[test]
fn cached_method_expansion() {
    let out = crate::cached::expand(
        quote!(
            entity = "product_list",
            ttl = "short",
            key = "{category}",
            variant = "p{page}"
        ),
        quote! {
            /// Products of a category, one page at a time.
            pub async fn list(&self, category: u32, page: u32) -> Result<Vec<Product>, DbError> {
                self.db.list(category, page).await
            }
        },
    );
    check_snapshot("cached_method", &pretty(out));
}

#[test]
fn cached_batch_expansion() {
    let out = crate::cached::expand(
        quote!(
            entity = "product",
            ttl = "medium",
            key = "{id}",
            variant = "{lang}",
            batch
        ),
        quote! {
            /// Products by id, in one query for those the cache does not have.
            pub async fn products(&self, ids: &[u64], lang: Lang) -> Result<HashMap<u64, Product>, DbError> {
                self.db.products(ids, lang).await
            }
        },
    );
    check_snapshot("cached_batch", &pretty(out));
}

#[test]
fn invalidates_expansion() {
    let out = crate::invalidates::expand(
        quote!(entity = "product", key = "{id}"),
        quote! {
            async fn update(&self, id: u64, update: &ProductUpdate) -> Result<(), DbError> {
                self.db.update(id, update).await
            }
        },
    );
    check_snapshot("invalidates", &pretty(out));
}

#[test]
fn cache_put_expansion() {
    let out = crate::cache_put::expand(
        quote!(entity = "product", key = "{p.id}"),
        quote! {
            async fn save(&self, p: Product) -> Result<Product, DbError> {
                self.db.save(p).await
            }
        },
    );
    check_snapshot("cache_put", &pretty(out));
}

#[test]
fn ordered_cache_put_expansion() {
    let out = crate::cache_put::expand(
        quote!(
            entity = "product",
            key = "{id}",
            revision = |product| product.version
        ),
        quote! {
            async fn set_price(&self, id: u64, cents: u32) -> Result<Product, DbError> {
                self.db.set_price(id, cents).await
            }
        },
    );
    check_snapshot("cache_put_ordered", &pretty(out));
}

#[test]
fn the_docs_show_the_current_expansions() {
    let docs = include_str!("../../docs/macros.md");
    for name in [
        "cached_method",
        "cached_batch",
        "invalidates",
        "cache_put_ordered",
    ] {
        let path = format!("{}/snapshots/{name}.rs", env!("CARGO_MANIFEST_DIR"));
        let snapshot = std::fs::read_to_string(&path).expect("snapshot");
        assert!(
            docs.contains(&snapshot),
            "docs/macros.md no longer shows {name}.rs"
        );
    }
}
