//! Maps a dotted key path (`region[1].weight`) back to its line in the source, so that
//! value problems found after deserializing still point at the file.

use crate::error::{line_col, Problem};

/// Places each `(key, message)` at the line of its key (or the nearest enclosing one).
pub(crate) fn place(problems: Vec<(String, String)>, text: &str) -> Vec<Problem> {
    let doc = toml_edit::ImDocument::parse(text).ok();
    let mut placed: Vec<Problem> = problems
        .into_iter()
        .map(|(key, message)| {
            let offset = doc.as_ref().and_then(|d| offset_of(d, &key));
            let (line, column) = match offset {
                Some(o) => {
                    let (l, c) = line_col(text, o);
                    (Some(l), Some(c))
                }
                None => (None, None),
            };
            Problem {
                line,
                column,
                key,
                message,
            }
        })
        .collect();
    placed.sort_by_key(|p| (p.line.unwrap_or(usize::MAX), p.column.unwrap_or(0)));
    placed
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

fn segments(path: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (name, rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            out.push(Segment::Key(name));
        }
        for idx in rest.split('[').filter(|s| !s.is_empty()) {
            if let Ok(i) = idx.trim_end_matches(']').parse() {
                out.push(Segment::Index(i));
            }
        }
    }
    out
}

/// Byte offset of the deepest part of `path` present in the document.
fn offset_of(doc: &toml_edit::ImDocument<&str>, path: &str) -> Option<usize> {
    find(Node::Item(doc.as_item()), &segments(path), None)
}

/// A place in the document: tables in an array of tables are not `Item`s.
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a toml_edit::Item),
    Table(&'a toml_edit::Table),
    Value(&'a toml_edit::Value),
}

impl<'a> Node<'a> {
    fn table_like(self) -> Option<&'a dyn toml_edit::TableLike> {
        match self {
            Node::Item(i) => i.as_table_like(),
            Node::Table(t) => Some(t),
            Node::Value(toml_edit::Value::InlineTable(t)) => Some(t),
            Node::Value(_) => None,
        }
    }

    fn index(self, i: usize) -> Option<(Node<'a>, Option<usize>)> {
        match self {
            Node::Item(toml_edit::Item::ArrayOfTables(a)) => a
                .get(i)
                .map(|t| (Node::Table(t), t.span().map(|s| s.start))),
            Node::Item(toml_edit::Item::Value(toml_edit::Value::Array(a)))
            | Node::Value(toml_edit::Value::Array(a)) => a
                .get(i)
                .map(|v| (Node::Value(v), v.span().map(|s| s.start))),
            _ => None,
        }
    }
}

fn find(node: Node<'_>, segs: &[Segment<'_>], best: Option<usize>) -> Option<usize> {
    let Some((first, rest)) = segs.split_first() else {
        return best;
    };
    match first {
        Segment::Key(name) => match node.table_like().and_then(|t| t.get_key_value(name)) {
            Some((key, next)) => find(Node::Item(next), rest, key.span().map(|s| s.start).or(best)),
            None => best,
        },
        Segment::Index(i) => match node.index(*i) {
            Some((next, at)) => find(next, rest, at.or(best)),
            None => best,
        },
    }
}
