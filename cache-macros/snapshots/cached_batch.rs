/// Products by id, in one query for those the cache does not have.
pub async fn products(
    &self,
    ids: &[u64],
    lang: Lang,
) -> Result<HashMap<u64, Product>, DbError> {
    static __CACHE_SITE: ::cache_runtime::__private::ValueSite = ::cache_runtime::__private::ValueSite::new(
        ::cache_runtime::__private::EntitySite::new(
            "product",
            ::core::option::Option::None,
            ::core::concat!(::core::module_path!(), "::products"),
        ),
        ::cache_runtime::__private::ReadOptions::new(
            ::cache_runtime::__private::Ttl::Medium,
        ),
        ::core::option::Option::None,
    );
    ::cache_runtime::__private::cache_value::<Product>();
    let __cache_ids: &[u64] = &ids;
    let __cache_key = |id: &u64| ::cache_runtime::__private::KeyParts {
        id: ::cache_runtime::__private::KeyWriter::new().value(&(id)).finish(),
        variant: ::core::option::Option::Some(
            ::cache_runtime::__private::KeyWriter::new().value(&(lang)).finish(),
        ),
        tags: ::std::vec::Vec::new(),
    };
    let __cache_body = |__cache_missing: ::std::vec::Vec<u64>| {
        #[allow(unused_variables, unused_mut)]
        let lang = ::core::clone::Clone::clone(&lang);
        async move {
            let ids: &[u64] = &__cache_missing;
            let __cache_ret: Result<HashMap<u64, Product>, DbError> = {
                self.db.products(ids, lang).await
            };
            __cache_ret
        }
    };
    ::cache_runtime::__private::cached_batch_result(
            &__CACHE_SITE,
            __cache_ids,
            __cache_key,
            __cache_body,
        )
        .await
}
