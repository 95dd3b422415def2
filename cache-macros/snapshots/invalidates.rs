async fn update(&self, id: u64, update: &ProductUpdate) -> Result<(), DbError> {
    static __CACHE_SITE: ::cache_runtime::__private::EntitySite = ::cache_runtime::__private::EntitySite::new(
        "product",
        ::core::option::Option::None,
        ::core::concat!(::core::module_path!(), "::update"),
    );
    let __cache_target = ::cache_runtime::__private::Target::Id(
        ::cache_runtime::__private::KeyWriter::new().value(&(id)).finish(),
    );
    let __cache_ret = async move {
        let __cache_ret: Result<(), DbError> = { self.db.update(id, update).await };
        __cache_ret
    }
        .await;
    if __cache_ret.is_ok() {
        ::cache_runtime::__private::invalidate(
                &__CACHE_SITE,
                ::core::option::Option::Some(__cache_target),
            )
            .await;
    }
    __cache_ret
}
