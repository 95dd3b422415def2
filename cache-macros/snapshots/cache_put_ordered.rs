async fn set_price(&self, id: u64, cents: u32) -> Result<Product, DbError> {
    static __CACHE_SITE: ::cache_runtime::__private::ValueSite = ::cache_runtime::__private::ValueSite::new(
        ::cache_runtime::__private::EntitySite::new(
            "product",
            ::core::option::Option::None,
            ::core::concat!(::core::module_path!(), "::set_price"),
        ),
        ::cache_runtime::__private::ReadOptions::new(
            ::cache_runtime::__private::Ttl::Medium,
        ),
        ::core::option::Option::None,
    );
    let __cache_key = ::core::option::Option::Some(::cache_runtime::__private::KeyParts {
        id: ::cache_runtime::__private::KeyWriter::new().value(&(id)).finish(),
        variant: ::core::option::Option::None,
        tags: ::std::vec::Vec::new(),
    });
    let __cache_write = ::cache_runtime::__private::begin_put(&__CACHE_SITE, __cache_key)
        .await;
    let __cache_ret = async move {
        let __cache_ret: Result<Product, DbError> = {
            self.db.set_price(id, cents).await
        };
        __cache_ret
    }
        .await;
    ::cache_runtime::__private::put_ordered_by(
            __cache_write,
            ::cache_runtime::__private::PutResult(&__cache_ret),
            |product| product.version,
        )
        .await;
    __cache_ret
}
