//! The CREST `_queryFilter` language: the AST, its parser (`parser`), its canonical string form
//! (`Display`) and the reference in-memory evaluator (`eval`). The store compiles the same AST to
//! SQL; the evaluator is the semantics both backends must agree with.

mod canonical;
mod eval;
mod parser;

pub use eval::matches;
pub use parser::{FilterError, MAX_FILTER_DEPTH, MAX_FILTER_LENGTH, parse, parse_with_limits};

use crate::JsonPointer;

/// A parsed query filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `true`: matches every object.
    True,
    /// `false`: matches nothing.
    False,
    /// `<field> <op> <value>` with one of the standard operators.
    Comparison {
        /// The field the assertion is about.
        field: JsonPointer,
        /// The operator.
        op: ComparisonOp,
        /// The literal compared with.
        value: Literal,
    },
    /// `<field> pr`: the field exists and is not null.
    Present(JsonPointer),
    /// `<field> <word> <value>` with an operator word that is not standard ("extended match").
    Extended {
        /// The field the assertion is about.
        field: JsonPointer,
        /// The operator word as written.
        operator: String,
        /// The literal compared with.
        value: Literal,
    },
    /// Every operand matches (n-ary, flattened).
    And(Vec<Filter>),
    /// Some operand matches (n-ary, flattened).
    Or(Vec<Filter>),
    /// `! (<filter>)`.
    Not(Box<Filter>),
}

/// The standard comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ComparisonOp {
    /// `eq`
    Eq,
    /// `co` (contains)
    Co,
    /// `sw` (starts with)
    Sw,
    /// `gt`
    Gt,
    /// `ge`
    Ge,
    /// `lt`
    Lt,
    /// `le`
    Le,
}

impl ComparisonOp {
    /// The operator word as written in filters.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Eq => "eq",
            Self::Co => "co",
            Self::Sw => "sw",
            Self::Gt => "gt",
            Self::Ge => "ge",
            Self::Lt => "lt",
            Self::Le => "le",
        }
    }

    /// The operator for a word, compared case-insensitively.
    pub fn from_word(word: &str) -> Option<Self> {
        [Self::Eq, Self::Co, Self::Sw, Self::Gt, Self::Ge, Self::Lt, Self::Le]
            .into_iter()
            .find(|op| op.as_str().eq_ignore_ascii_case(word))
    }
}

/// A literal value in a filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// A quoted string.
    String(String),
    /// A number without a `.`.
    Integer(i64),
    /// A number with a `.`.
    Float(f64),
    /// `true` or `false`, unquoted.
    Boolean(bool),
    /// `null`, unquoted.
    Null,
}

impl Filter {
    /// Calls `visit` on every comparison, presence and extended node, depth first.
    pub fn for_each_leaf<'a>(&'a self, visit: &mut impl FnMut(&'a Filter)) {
        match self {
            Self::And(children) | Self::Or(children) => {
                children.iter().for_each(|child| child.for_each_leaf(visit));
            }
            Self::Not(child) => child.for_each_leaf(visit),
            Self::True | Self::False => {}
            leaf => visit(leaf),
        }
    }

    /// Renames the first segment `from` of every field the filter names to `to`
    /// (`effectiveRoles/_refResourceId` → `roles/_refResourceId`).
    pub fn rename_field(&mut self, from: &str, to: &str) {
        match self {
            Self::And(children) | Self::Or(children) => {
                children.iter_mut().for_each(|child| child.rename_field(from, to));
            }
            Self::Not(child) => child.rename_field(from, to),
            Self::True | Self::False => {}
            Self::Comparison { field, .. } | Self::Present(field) | Self::Extended { field, .. } => {
                if field.first() == Some(from) {
                    let mut segments = field.segments().to_vec();
                    segments[0] = to.to_owned();
                    *field = JsonPointer::from_segments(segments);
                }
            }
        }
    }

    /// The first extended (non-standard) operator in the filter, if any.
    pub fn first_extended_operator(&self) -> Option<&str> {
        let mut found = None;
        self.for_each_leaf(&mut |leaf| {
            if let (None, Self::Extended { operator, .. }) = (&found, leaf) {
                found = Some(operator.as_str());
            }
        });
        found
    }
}
