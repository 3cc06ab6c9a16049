//! The XML documents as a small element tree (read with quick-xml's pull reader), and a
//! cursor over an element's children that knows which ones were never asked for, so that
//! every element the import does not understand is reported rather than skipped.

use quick_xml::Reader;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};

/// One element: its local name (namespace prefix dropped), its text (trimmed; entities and
/// CDATA resolved) and its child elements in document order.
#[derive(Debug, Default)]
pub(super) struct Element {
    pub(super) name: String,
    pub(super) text: String,
    pub(super) children: Vec<Element>,
    /// Attributes other than namespace declarations (none of the documented elements has
    /// any, so each is reported).
    pub(super) attributes: Vec<String>,
}

/// Parse a whole document into its root element.
pub(super) fn parse(xml: &str) -> Result<Element, String> {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("{e} (at byte {})", reader.error_position()))?;
        let at = reader.buffer_position();
        match event {
            Event::Start(start) => stack.push(open(&start)?),
            Event::Empty(start) => {
                let element = open(&start)?;
                close(element, &mut stack, &mut root, at)?;
            }
            Event::End(_) => {
                let mut element = stack.pop().ok_or("an end tag without a start")?;
                element.text = element.text.trim().to_owned();
                close(element, &mut stack, &mut root, at)?;
            }
            Event::Text(text) => {
                let text = text.xml10_content().map_err(|e| e.to_string())?;
                push_text(&mut stack, &text, at)?;
            }
            Event::CData(data) => {
                let text = data.decode().map_err(|e| e.to_string())?;
                push_text(&mut stack, &text, at)?;
            }
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref().map_err(|e| e.to_string())? {
                    Some(c) => c.to_string(),
                    None => {
                        let name = reference.decode().map_err(|e| e.to_string())?;
                        resolve_predefined_entity(&name)
                            .ok_or_else(|| format!("unknown entity &{name}; (at byte {at})"))?
                            .to_owned()
                    }
                };
                push_text(&mut stack, &resolved, at)?;
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err("the document ends inside an element".to_owned());
    }
    root.ok_or_else(|| "no root element".to_owned())
}

fn open(start: &BytesStart<'_>) -> Result<Element, String> {
    let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
    let mut attributes = Vec::new();
    for attribute in start.attributes() {
        let attribute = attribute.map_err(|e| format!("<{name}>: {e}"))?;
        let key = attribute.key.as_ref();
        if key != b"xmlns" && !key.starts_with(b"xmlns:") {
            attributes.push(String::from_utf8_lossy(key).into_owned());
        }
    }
    Ok(Element {
        name,
        attributes,
        ..Element::default()
    })
}

fn close(
    element: Element,
    stack: &mut [Element],
    root: &mut Option<Element>,
    at: u64,
) -> Result<(), String> {
    match stack.last_mut() {
        Some(parent) => parent.children.push(element),
        None if root.is_none() => *root = Some(element),
        None => {
            return Err(format!(
                "a second root element <{}> (at byte {at})",
                element.name
            ));
        }
    }
    Ok(())
}

fn push_text(stack: &mut [Element], text: &str, at: u64) -> Result<(), String> {
    match stack.last_mut() {
        Some(element) => element.text.push_str(text),
        None if text.trim().is_empty() => {}
        None => return Err(format!("text outside the root element (at byte {at})")),
    }
    Ok(())
}

/// The children of one element, handed out by name; what is never asked for is unknown.
pub(super) struct Fields<'a> {
    at: String,
    element: &'a Element,
    used: Vec<bool>,
}

impl<'a> Fields<'a> {
    /// The children of `element`, which is at `at` in the document.
    pub(super) fn new(at: impl Into<String>, element: &'a Element) -> Self {
        Self {
            at: at.into(),
            element,
            used: vec![false; element.children.len()],
        }
    }

    /// Where this element is.
    pub(super) fn at(&self) -> &str {
        &self.at
    }

    /// Where its child `name` is.
    pub(super) fn path(&self, name: &str) -> String {
        format!("{}.{name}", self.at)
    }

    /// Every child whose name passes `test`, with its location (`Parent.Name[1]`, 1-based,
    /// counted among the children of that name).
    pub(super) fn matching(&mut self, test: impl Fn(&str) -> bool) -> Vec<(String, &'a Element)> {
        let mut counts: Vec<(&str, usize)> = Vec::new();
        let mut out = Vec::new();
        for (i, child) in self.element.children.iter().enumerate() {
            if !test(&child.name) {
                continue;
            }
            self.used[i] = true;
            let n = match counts.iter_mut().find(|(name, _)| *name == child.name) {
                Some((_, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    counts.push((&child.name, 1));
                    1
                }
            };
            out.push((format!("{}.{}[{n}]", self.at, child.name), child));
        }
        out
    }

    /// Every child named `name`.
    pub(super) fn all(&mut self, name: &str) -> Vec<(String, &'a Element)> {
        self.matching(|n| n == name)
    }

    /// The child named `name`, if any; a second one is returned in `repeated`.
    pub(super) fn one(&mut self, name: &str) -> One<'a> {
        let mut all = self.all(name).into_iter();
        let first = all.next().map(|(_, e)| (self.path(name), e));
        One {
            first,
            repeated: all.map(|(at, _)| at).collect(),
        }
    }

    /// The children nobody asked for, with their locations, and the attributes of this
    /// element.
    pub(super) fn unknown(self) -> Vec<String> {
        let mut out: Vec<String> = self
            .element
            .attributes
            .iter()
            .map(|a| format!("{}@{a}", self.at))
            .collect();
        for (i, child) in self.element.children.iter().enumerate() {
            if !self.used[i] {
                out.push(format!("{}.{}", self.at, child.name));
            }
        }
        out
    }
}

/// A child that should appear at most once.
pub(super) struct One<'a> {
    /// Its location and the element.
    pub(super) first: Option<(String, &'a Element)>,
    /// Where further copies are.
    pub(super) repeated: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_text_entities_cdata_namespaces() {
        let root = parse(
            r#"<?xml version="1.0" encoding="UTF-8"?>
            <!-- a comment -->
            <a:Root xmlns:a="urn:x" xmlns="urn:y" id="7">
              <Key> x&amp;y&#x41; </Key>
              <Key><![CDATA[<raw>]]></Key>
              <Empty/>
            </a:Root>"#,
        )
        .unwrap();
        assert_eq!(root.name, "Root");
        assert_eq!(root.attributes, ["id"]);
        let texts: Vec<&str> = root.children.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, ["x&yA", "<raw>", ""]);

        let mut fields = Fields::new("Root", &root);
        let keys = fields.all("Key");
        assert_eq!(keys[1].0, "Root.Key[2]");
        assert_eq!(fields.unknown(), ["Root@id", "Root.Empty"]);
    }

    #[test]
    fn broken_documents() {
        for bad in [
            "",
            "<a><b></a>",
            "<a></a><b></b>",
            "<a>",
            "<a>&nope;</a>",
            "text",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
