//! Where data enters Vitrine. For now: the generated demo shop.

pub mod demo;
