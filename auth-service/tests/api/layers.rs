//! The layers are visible in the tree and kept (README "Layout").

#[test]
fn every_module_imports_only_from_the_layers_below_it() {
    test_support::layers::assert_layered(env!("CARGO_MANIFEST_DIR"));
}
