//! The XPath subset that campaigns use to read buyers' XML answers: parsing a
//! path once when a campaign is stored, and selecting nodes from a parsed
//! reply (`roxmltree`).
//!
//! Grammar (everything else is a parse error, never a silent mismatch):
//!
//! ```text
//! path      := step-sep step (step-sep step)*      -- always absolute
//! step-sep  := "/" | "//"                          -- "//" = any depth below
//! step      := name-test position?                 -- element step
//!            | "@" name-test                       -- attribute, last step only
//!            | "text()"                            -- text nodes, last step only
//! name-test := "*" | (prefix ":")? local-name | prefix ":*"
//! position  := "[" n "]"                           -- 1-based, n >= 1
//! ```
//!
//! Namespaces: names are matched on their local part only; a prefix written
//! in the path is accepted and ignored. Buyers' SOAP-ish answers declare
//! namespaces inconsistently and campaigns have no place to bind prefixes,
//! so local names are the only thing a campaign author can rely on.
//!
//! `[n]` follows XPath: it picks the n-th matching child of each parent, so
//! `//b[1]` is every `b` that is the first `b` among its siblings.

use std::collections::HashSet;
use std::fmt;

use roxmltree::{Document, Node, NodeId};
use thiserror::Error;

/// Longest expression accepted. Real answer paths are a few dozen
/// characters; the bound keeps error positions and parse work small.
pub const MAX_EXPRESSION_LEN: usize = 512;

/// Most steps in one path. Each step is at most one pass over the
/// document, so this bounds the work one evaluation can do.
pub const MAX_STEPS: usize = 32;

/// Cap, in bytes, on an element's string value. Without it `//*` over a
/// deeply nested answer would copy the same text once per ancestor.
pub const MAX_STRING_VALUE_BYTES: usize = 16 * 1024;

/// Why a path did not parse; `position` is the 1-based character where the
/// problem was found.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("at position {position}: {message}")]
pub struct XPathError {
    pub position: usize,
    pub message: String,
}

/// A parsed path, ready to be evaluated against any number of documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XPath {
    source: String,
    steps: Vec<Step>,
}

/// One node the path selected, in document order.
#[derive(Debug, Clone, Copy)]
pub enum XmlMatch<'a, 'input> {
    Element(Node<'a, 'input>),
    Attribute(&'a str),
    Text(Node<'a, 'input>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum NameTest {
    Any,
    Local(String),
}

/// How a step reaches its nodes from the previous step's nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Axis {
    /// `/`: children.
    Child,
    /// `//`: children of the nodes or of any of their descendants.
    Descendant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Element { axis: Axis, name: NameTest, position: Option<usize> },
    Attribute { axis: Axis, name: NameTest },
    Text { axis: Axis },
}

impl XPath {
    /// Parses an expression of the subset described in the module doc.
    pub fn parse(expression: &str) -> Result<Self, XPathError> {
        if expression.len() > MAX_EXPRESSION_LEN {
            return Err(XPathError { position: 1, message: format!("path is longer than {MAX_EXPRESSION_LEN} bytes") });
        }
        let steps = Parser::new(expression).path()?;
        Ok(Self { source: expression.to_owned(), steps })
    }

    /// The expression as written in the campaign.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Every node the path selects, in document order, without duplicates.
    pub fn select<'a, 'input>(&self, doc: &'a Document<'input>) -> Vec<XmlMatch<'a, 'input>> {
        let mut context = vec![doc.root()];
        for step in &self.steps {
            match step {
                Step::Element { axis, name, position } => {
                    context = element_step(&parents(&context, *axis), name, *position)
                }
                Step::Attribute { axis, name } => {
                    return attribute_step(&parents(&context, *axis), name);
                }
                Step::Text { axis } => return text_step(&parents(&context, *axis)),
            }
        }
        context.into_iter().map(XmlMatch::Element).collect()
    }

    /// The string value of the first selected node, if any.
    pub fn first_value(&self, doc: &Document<'_>) -> Option<String> {
        self.select(doc).first().map(XmlMatch::string_value)
    }
}

impl fmt::Display for XPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl XmlMatch<'_, '_> {
    /// XPath's string value: an element's text content (all descendant text,
    /// concatenated, capped at [`MAX_STRING_VALUE_BYTES`]), an attribute's
    /// value, a text node's text.
    pub fn string_value(&self) -> String {
        match self {
            XmlMatch::Element(node) => element_text(*node),
            XmlMatch::Attribute(value) => (*value).to_owned(),
            XmlMatch::Text(node) => node.text().unwrap_or_default().to_owned(),
        }
    }
}

impl NameTest {
    fn matches(&self, local_name: &str) -> bool {
        match self {
            NameTest::Any => true,
            NameTest::Local(name) => name == local_name,
        }
    }
}

/// The nodes whose children the next step looks at.
fn parents<'a, 'input>(context: &[Node<'a, 'input>], axis: Axis) -> Vec<Node<'a, 'input>> {
    match axis {
        Axis::Child => context.to_vec(),
        Axis::Descendant => descendants_or_self(context),
    }
}

/// Every element (or the root) in or below `context`, in document order.
/// `context` is in document order, so an ancestor is walked before its
/// descendants and the `seen` set keeps each subtree to a single walk.
fn descendants_or_self<'a, 'input>(context: &[Node<'a, 'input>]) -> Vec<Node<'a, 'input>> {
    let mut seen: HashSet<NodeId> = HashSet::new();
    let mut found = Vec::new();
    for node in context {
        if seen.contains(&node.id()) {
            continue;
        }
        for below in node.descendants() {
            if below.is_element() || below.is_root() {
                seen.insert(below.id());
                found.push(below);
            }
        }
    }
    found
}

fn element_step<'a, 'input>(
    parents: &[Node<'a, 'input>],
    name: &NameTest,
    position: Option<usize>,
) -> Vec<Node<'a, 'input>> {
    let mut found = Vec::new();
    for parent in parents {
        let matching = parent.children().filter(|child| child.is_element() && name.matches(child.tag_name().name()));
        match position {
            Some(n) => found.extend(matching.skip(n - 1).take(1)),
            None => found.extend(matching),
        }
    }
    // Children of a parent nested inside another parent belong in between
    // the outer parent's children.
    found.sort();
    found.dedup();
    found
}

fn attribute_step<'a, 'input>(parents: &[Node<'a, 'input>], name: &NameTest) -> Vec<XmlMatch<'a, 'input>> {
    parents
        .iter()
        .flat_map(|parent| parent.attributes())
        .filter(|attribute| name.matches(attribute.name()))
        .map(|attribute| XmlMatch::Attribute(attribute.value()))
        .collect()
}

fn text_step<'a, 'input>(parents: &[Node<'a, 'input>]) -> Vec<XmlMatch<'a, 'input>> {
    let mut found: Vec<Node<'a, 'input>> =
        parents.iter().flat_map(|parent| parent.children()).filter(Node::is_text).collect();
    found.sort();
    found.into_iter().map(XmlMatch::Text).collect()
}

fn element_text(node: Node<'_, '_>) -> String {
    let mut text = String::new();
    let pieces = node.descendants().filter(|n| n.is_text()).filter_map(|n| n.text());
    for piece in pieces {
        let room = MAX_STRING_VALUE_BYTES - text.len();
        if piece.len() > room {
            text.push_str(prefix_within(piece, room));
            break;
        }
        text.push_str(piece);
    }
    text
}

/// The longest prefix of `text` that fits in `max_bytes` without splitting
/// a character.
fn prefix_within(text: &str, max_bytes: usize) -> &str {
    let mut end = max_bytes.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Recursive-descent parser over the expression's characters; positions in
/// errors are 1-based character offsets.
struct Parser {
    chars: Vec<char>,
    at: usize,
}

impl Parser {
    fn new(expression: &str) -> Self {
        Self { chars: expression.chars().collect(), at: 0 }
    }

    fn path(&mut self) -> Result<Vec<Step>, XPathError> {
        if self.chars.is_empty() {
            return Err(self.error("path is empty"));
        }
        if self.peek() != Some('/') {
            return Err(self.error("path must be absolute (start with '/' or '//')"));
        }
        let mut steps = Vec::new();
        while !self.at_end() {
            if let Some(Step::Attribute { .. } | Step::Text { .. }) = steps.last() {
                return Err(self.error("an attribute or text() step must be the last step"));
            }
            if steps.len() == MAX_STEPS {
                return Err(self.error(&format!("path has more than {MAX_STEPS} steps")));
            }
            let axis = self.axis()?;
            steps.push(self.step(axis)?);
        }
        Ok(steps)
    }

    fn axis(&mut self) -> Result<Axis, XPathError> {
        if !self.eat('/') {
            return Err(self.unexpected("'/' between steps"));
        }
        if self.eat('/') {
            Ok(Axis::Descendant)
        } else {
            Ok(Axis::Child)
        }
    }

    fn step(&mut self, axis: Axis) -> Result<Step, XPathError> {
        if self.eat('@') {
            let name = self.name_test()?;
            if self.peek() == Some('[') {
                return Err(self.error("predicates are not supported on attributes"));
            }
            return Ok(Step::Attribute { axis, name });
        }
        if self.eat_word("text()") {
            if self.peek() == Some('[') {
                return Err(self.error("predicates are not supported on text()"));
            }
            return Ok(Step::Text { axis });
        }
        let name = self.name_test()?;
        let position = self.position()?;
        if self.peek() == Some('(') {
            return Err(self.error("only the text() node test is supported"));
        }
        Ok(Step::Element { axis, name, position })
    }

    fn name_test(&mut self) -> Result<NameTest, XPathError> {
        if self.eat('*') {
            return Ok(NameTest::Any);
        }
        let first = self.name()?;
        if !self.eat(':') {
            return Ok(NameTest::Local(first));
        }
        // A prefix is accepted and ignored: names match on local part only.
        if self.eat('*') {
            return Ok(NameTest::Any);
        }
        Ok(NameTest::Local(self.name()?))
    }

    fn name(&mut self) -> Result<String, XPathError> {
        match self.peek() {
            Some(c) if is_name_start(c) => {}
            _ => return Err(self.unexpected("a name, '*', '@' or text()")),
        }
        let start = self.at;
        while self.peek().is_some_and(is_name_char) {
            self.at += 1;
        }
        Ok(self.chars[start..self.at].iter().collect())
    }

    fn position(&mut self) -> Result<Option<usize>, XPathError> {
        if !self.eat('[') {
            return Ok(None);
        }
        let start = self.at;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.at += 1;
        }
        if start == self.at {
            return Err(self.error("only a position predicate like [1] is supported"));
        }
        let digits: String = self.chars[start..self.at].iter().collect();
        let position = digits.parse::<usize>().map_err(|_| self.error("position is too large"))?;
        if position == 0 {
            return Err(self.error("positions start at 1"));
        }
        if !self.eat(']') {
            return Err(self.unexpected("']'"));
        }
        if self.peek() == Some('[') {
            return Err(self.error("only one predicate per step is supported"));
        }
        Ok(Some(position))
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn at_end(&self) -> bool {
        self.at >= self.chars.len()
    }

    fn eat(&mut self, expected: char) -> bool {
        let found = self.peek() == Some(expected);
        if found {
            self.at += 1;
        }
        found
    }

    fn eat_word(&mut self, word: &str) -> bool {
        let len = word.chars().count();
        let found = self.chars.get(self.at..self.at + len).is_some_and(|slice| slice.iter().copied().eq(word.chars()));
        if found {
            self.at += len;
        }
        found
    }

    fn unexpected(&self, wanted: &str) -> XPathError {
        match self.peek() {
            Some(c) => self.error(&format!("expected {wanted}, found {c:?}")),
            None => self.error(&format!("expected {wanted}, found the end of the path")),
        }
    }

    fn error(&self, message: &str) -> XPathError {
        XPathError { position: self.at + 1, message: message.to_owned() }
    }
}

fn is_name_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.') || (!c.is_ascii() && !c.is_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SHOP: &str = r#"<shop xmlns:x="urn:x">
  <item id="1" x:code="c1"><name>Apple</name><price>1.20</price></item>
  <item id="2"><name>Pear</name><box><item id="3"><name>Fig</name></item></box></item>
  <note>Hello <b>big</b> world</note>
  <x:meta x:kind="k">m</x:meta>
</shop>"#;

    fn values(path: &str, xml: &str) -> Vec<String> {
        let doc = Document::parse(xml).unwrap();
        XPath::parse(path).unwrap().select(&doc).iter().map(XmlMatch::string_value).collect()
    }

    fn first(path: &str, xml: &str) -> Option<String> {
        let doc = Document::parse(xml).unwrap();
        XPath::parse(path).unwrap().first_value(&doc)
    }

    fn parse_error(path: &str) -> XPathError {
        XPath::parse(path).unwrap_err()
    }

    #[test]
    fn absolute_child_path_selects_the_element_text() {
        assert_eq!(first("/shop/item/name", SHOP).as_deref(), Some("Apple"));
        assert_eq!(values("/shop/item/name", SHOP), vec!["Apple", "Pear"]);
    }

    #[test]
    fn descendant_step_finds_nested_nodes_in_document_order() {
        assert_eq!(values("//name", SHOP), vec!["Apple", "Pear", "Fig"]);
        assert_eq!(values("/shop//item/@id", SHOP), vec!["1", "2", "3"]);
        assert_eq!(values("/shop/item//name", SHOP), vec!["Apple", "Pear", "Fig"]);
    }

    #[test]
    fn wildcard_matches_any_element_name() {
        assert_eq!(values("/shop/*/name", SHOP), vec!["Apple", "Pear"]);
        assert_eq!(values("/*", "<a><b/></a>").len(), 1);
    }

    #[test]
    fn attribute_step_reads_the_value() {
        assert_eq!(first("/shop/item/@id", SHOP).as_deref(), Some("1"));
        assert_eq!(first("//item[2]/@id", SHOP).as_deref(), Some("2"));
        assert_eq!(values("//@id", SHOP), vec!["1", "2", "3"]);
        assert_eq!(values("/shop/item[1]/@*", SHOP), vec!["1", "c1"]);
    }

    #[test]
    fn text_step_reads_only_direct_text_children() {
        assert_eq!(values("/shop/note/text()", SHOP), vec!["Hello ", " world"]);
        assert_eq!(first("/shop/note", SHOP).as_deref(), Some("Hello big world"));
        assert_eq!(first("/shop/item/text()", SHOP), None);
    }

    #[test]
    fn position_picks_the_nth_matching_child_of_each_parent() {
        assert_eq!(first("/shop/item[2]/name", SHOP).as_deref(), Some("Pear"));
        assert_eq!(values("//item[1]/@id", SHOP), vec!["1", "3"]);
        assert!(values("/shop/item[3]", SHOP).is_empty());
    }

    #[test]
    fn names_match_on_local_part_whatever_the_prefix() {
        assert_eq!(first("/shop/meta", SHOP).as_deref(), Some("m"));
        assert_eq!(first("/shop/y:meta/@kind", SHOP).as_deref(), Some("k"));
        assert_eq!(first("/shop/item/@code", SHOP).as_deref(), Some("c1"));
        assert_eq!(values("/shop/x:*", SHOP).len(), 4);
        let soap = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">
            <s:Body><r:Result xmlns:r="urn:r">OK</r:Result></s:Body></s:Envelope>"#;
        assert_eq!(first("/Envelope/Body/Result", soap).as_deref(), Some("OK"));
    }

    #[test]
    fn missing_nodes_select_nothing() {
        assert!(values("/nope", SHOP).is_empty());
        assert!(values("/shop/item/@missing", SHOP).is_empty());
    }

    #[test]
    fn element_string_value_is_capped() {
        let big = format!("<a>{}</a>", "é".repeat(MAX_STRING_VALUE_BYTES));
        let value = first("/a", &big).unwrap();
        assert!(value.len() <= MAX_STRING_VALUE_BYTES);
        assert_eq!(value.len(), MAX_STRING_VALUE_BYTES);
        assert!(value.chars().all(|c| c == 'é'));
    }

    #[test]
    fn parse_errors_say_where_and_why() {
        assert_eq!(parse_error("").message, "path is empty");
        assert_eq!(parse_error("a/b").position, 1);
        assert!(parse_error("a/b").message.contains("absolute"));
        assert_eq!(parse_error("/").position, 2);
        assert_eq!(parse_error("/a/").position, 4);
        assert_eq!(parse_error("/a/@id/b").position, 7);
        assert!(parse_error("/a/@id/b").message.contains("last step"));
        assert!(parse_error("/a/text()/b").message.contains("last step"));
        assert_eq!(parse_error("/a[0]").message, "positions start at 1");
        assert!(parse_error("/a[x]").message.contains("position predicate"));
        assert!(parse_error("/a[1][2]").message.contains("one predicate"));
        assert!(parse_error("/a[1").message.contains("']'"));
        assert!(parse_error("/a b").message.contains("'/' between steps"));
        assert!(parse_error("/node()").message.contains("text()"));
        assert!(parse_error("/a/@id[1]").message.contains("attributes"));
        assert!(parse_error("/a[99999999999999999999999]").message.contains("too large"));
        assert!(parse_error("///a").message.contains("a name"));
    }

    #[test]
    fn bounds_are_enforced_at_parse_time() {
        let long = format!("/{}", "a".repeat(MAX_EXPRESSION_LEN));
        assert!(parse_error(&long).message.contains("longer"));
        let deep = "/a".repeat(MAX_STEPS + 1);
        assert!(parse_error(&deep).message.contains("steps"));
        assert!(XPath::parse(&"/a".repeat(MAX_STEPS)).is_ok());
    }

    #[test]
    fn display_is_the_source_expression() {
        let path = XPath::parse("//lead/@id").unwrap();
        assert_eq!(path.to_string(), "//lead/@id");
        assert_eq!(path.as_str(), "//lead/@id");
    }

    #[test]
    fn deep_nesting_is_walked_without_recursion() {
        let depth = 5_000;
        let xml = format!("{}x{}", "<a>".repeat(depth), "</a>".repeat(depth));
        assert_eq!(values("//a//a", &xml).len(), depth - 1);
        assert_eq!(first("//a[1]/text()", &xml).as_deref(), Some("x"));
    }

    proptest! {
        #[test]
        fn parser_never_panics_on_arbitrary_strings(expression in any::<String>()) {
            let _ = XPath::parse(&expression);
        }

        #[test]
        fn parser_and_evaluation_never_panic_on_path_like_strings(
            expression in "[/@*a-z:\\[\\]0-9()étx]{0,40}"
        ) {
            if let Ok(path) = XPath::parse(&expression) {
                let doc = Document::parse(SHOP).unwrap();
                for found in path.select(&doc) {
                    let _ = found.string_value();
                }
            }
        }
    }
}
