//! Walking simd-json tapes, as the body's JSON merging and the response
//! classifier both do.

use simd_json::Node;

/// Number of tape nodes of the value starting with `node`.
pub(crate) fn span(node: &Node<'_>) -> usize {
    match node {
        Node::Object { count, .. } | Node::Array { count, .. } => count + 1,
        _ => 1,
    }
}
