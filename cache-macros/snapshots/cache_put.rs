async fn save(&self, p: Product) -> Result<Product, DbError> {
    static __CACHE_SITE: ::cache_runtime::__private::ValueSite = ::cache_runtime::__private::ValueSite::new(
        ::cache_runtime::__private::EntitySite::new(
            "product",
            ::core::option::Option::None,
            ::core::concat!(::core::module_path!(), "::save"),
        ),
        ::cache_runtime::__private::ReadOptions::new(
            ::cache_runtime::__private::Ttl::Medium,
        ),
        ::core::option::Option::None,
    );
    let __cache_key = ::core::option::Option::Some(::cache_runtime::__private::KeyParts {
        id: ::cache_runtime::__private::KeyWriter::new().value(&(p.id)).finish(),
        variant: ::core::option::Option::None,
        tags: ::std::vec::Vec::new(),
    });
    let __cache_write = ::cache_runtime::__private::begin_put(&__CACHE_SITE, __cache_key)
        .await;
    let __cache_ret = async move {
        let __cache_ret: Result<Product, DbError> = { self.db.save(p).await };
        __cache_ret
    }
        .await;
    ::cache_runtime::__private::put(
            __cache_write,
            ::cache_runtime::__private::PutResult(&__cache_ret),
            ::core::option::Option::None,
        )
        .await;
    __cache_ret
}
