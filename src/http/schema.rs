//! Schema pieces the documented types share. The document itself is
//! [`super::openapi`], which names the handlers; this module names nothing of the HTTP
//! layer, so every handler's module may use it.

/// A string field's schema that names every value it takes (codes, statuses): for
/// `#[schema(schema_with = ...)]` on a `&'static str` field.
pub(crate) fn string_enum<'a>(
    values: impl IntoIterator<Item = &'a str>,
) -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(values))
        .build()
}
