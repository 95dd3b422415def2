/// Products of a category, one page at a time.
pub async fn list(&self, category: u32, page: u32) -> Result<Vec<Product>, DbError> {
    static __CACHE_SITE: ::cache_runtime::__private::ValueSite = ::cache_runtime::__private::ValueSite::new(
        ::cache_runtime::__private::EntitySite::new(
            "product_list",
            ::core::option::Option::None,
            ::core::concat!(::core::module_path!(), "::list"),
        ),
        ::cache_runtime::__private::ReadOptions::new(
            ::cache_runtime::__private::Ttl::Short,
        ),
        ::core::option::Option::None,
    );
    ::cache_runtime::__private::cache_value::<Vec<Product>>();
    let __cache_key = ::core::option::Option::Some(::cache_runtime::__private::KeyParts {
        id: ::cache_runtime::__private::KeyWriter::new().value(&(category)).finish(),
        variant: ::core::option::Option::Some(
            ::cache_runtime::__private::KeyWriter::new()
                .literal("p")
                .value(&(page))
                .finish(),
        ),
        tags: ::std::vec::Vec::new(),
    });
    let __cache_body = async move {
        let __cache_ret: Result<Vec<Product>, DbError> = {
            self.db.list(category, page).await
        };
        __cache_ret
    };
    let __cache_errors = {
        use ::cache_runtime::__private::{KeepErrors as _, ShareClonedErrors as _};
        (&::cache_runtime::__private::Probe::of(&__cache_body)).error_sharing()
    };
    let __cache_spawner = ::core::option::Option::None;
    ::cache_runtime::__private::cached_result(
            &__CACHE_SITE,
            __cache_key,
            __cache_errors,
            __cache_spawner,
            __cache_body,
        )
        .await
}
