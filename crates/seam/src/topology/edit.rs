//! Adding a subscription to a topology file (`seam register`) as a text edit, so the operator's
//! comments and layout survive; the result is parsed again and must equal the old topology plus
//! exactly the new source, or the file is left untouched.

use std::path::Path;

use super::{SourceSpec, Topology, TopologyError};

/// What [`add_source`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit {
    /// The subscription was added to the file.
    Added,
    /// The file already had it.
    AlreadyThere,
}

/// Adds `source` (through translator `<source>-to-<consumer>`) to `consumer`'s sources in the
/// topology file at `path`.
pub fn add_source(path: &Path, consumer: &str, source: &str) -> Result<Edit, TopologyError> {
    let file = path.display().to_string();
    let before = Topology::load(path)?;
    let invalid = |field: &str, problem: String, fix: String| TopologyError::Invalid {
        file: file.clone(),
        field: field.to_string(),
        problem,
        fix,
    };
    let names: Vec<&str> = before.services.iter().map(|s| s.name.as_str()).collect();
    for (what, name) in [("consumer", consumer), ("source", source)] {
        if before.service(name).is_none() {
            return Err(invalid(
                "services",
                format!("the {what} `{name}` is not a declared service"),
                format!("declare it under services first, or use one of {names:?}"),
            ));
        }
    }
    if consumer == source {
        return Err(invalid(
            "consumers",
            format!("{consumer} would consume its own events"),
            "register a different source".into(),
        ));
    }
    if before.sources_of(consumer).iter().any(|s| s.service == source) {
        return Ok(Edit::AlreadyThere);
    }
    let text = std::fs::read_to_string(path).map_err(|e| TopologyError::Read {
        file: file.clone(),
        detail: e.to_string(),
    })?;
    let edited = insert(&text, consumer, source);
    let mut expected = before.clone();
    let spec = SourceSpec {
        service: source.to_string(),
        translator: format!("{source}-to-{consumer}"),
    };
    match expected.consumers.iter_mut().find(|c| c.service == consumer) {
        Some(c) => c.sources.push(spec),
        None => expected.consumers.push(super::ConsumerSpec {
            service: consumer.to_string(),
            sources: vec![spec],
        }),
    }
    let mut after = Topology::parse(&file, &edited).ok();
    if let Some(t) = after.as_mut() {
        t.services.clone_from(&expected.services);
    }
    if after.as_ref() != Some(&expected) {
        return Err(invalid(
            "consumers",
            "cannot add the subscription to this file's layout without rewriting it".into(),
            format!(
                "add `- service: {source}` with `translator: {source}-to-{consumer}` under {consumer}'s sources by hand, then run this again"
            ),
        ));
    }
    let tmp = path.with_extension("yaml.seam-tmp");
    std::fs::write(&tmp, edited)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| TopologyError::Read {
            file: file.clone(),
            detail: format!("writing the edited file: {e}"),
        })?;
    Ok(Edit::Added)
}

/// The last non-blank, non-comment line of `from..to` indented deeper than `deeper_than`,
/// reading on only while lines are blank, comments or that deep.
fn last_content(lines: &[String], from: usize, to: usize, deeper_than: usize) -> Option<usize> {
    (from..to)
        .take_while(|&i| {
            let l = &lines[i];
            l.trim().is_empty() || l.trim_start().starts_with('#') || indent(l) > deeper_than
        })
        .filter(|&i| !lines[i].trim().is_empty() && !lines[i].trim_start().starts_with('#'))
        .last()
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The text with the subscription inserted in block style, following the file's indentation.
fn insert(text: &str, consumer: &str, source: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let translator = format!("{source}-to-{consumer}");
    let section = lines.iter().position(|l| l.trim_end() == "consumers:");
    let Some(section) = section else {
        if lines.last().is_some_and(|l| !l.trim().is_empty()) {
            lines.push(String::new());
        }
        lines.extend([
            "consumers:".to_string(),
            format!("  - service: {consumer}"),
            "    sources:".to_string(),
            format!("      - service: {source}"),
            format!("        translator: {translator}"),
        ]);
        return lines.join("\n") + "\n";
    };
    // The consumers block ends at the next top-level key.
    let end = (section + 1..lines.len())
        .find(|&i| {
            let l = &lines[i];
            !l.trim().is_empty() && !l.starts_with('#') && !l.starts_with('-') && indent(l) == 0
        })
        .unwrap_or(lines.len());
    // Entries of the consumers list sit at the indentation of its first item.
    let entry_indent = (section + 1..end)
        .find(|&i| lines[i].trim_start().starts_with("- service:"))
        .map(|i| indent(&lines[i]));
    let entry = (section + 1..end).find(|&i| {
        let t = lines[i].trim();
        Some(indent(&lines[i])) == entry_indent && t.strip_prefix("- service:").map(str::trim) == Some(consumer)
    });
    match entry {
        Some(at) => {
            let dash = indent(&lines[at]);
            // A consumer declared before it has sources: `sources: []`, or no key at all.
            let block = last_content(&lines, at + 1, end, dash).unwrap_or(at);
            let key = (at..=block).find(|&i| {
                let t = lines[i].trim_start().trim_start_matches("- ");
                t.starts_with("sources:")
            });
            let mut end = end;
            match key {
                Some(k) if lines[k].trim_end().ends_with("[]") => {
                    let cut = lines[k].trim_end().trim_end_matches("[]").trim_end().to_string();
                    lines[k] = cut;
                }
                Some(_) => {}
                None => {
                    lines.insert(block + 1, format!("{}  sources:", " ".repeat(dash)));
                    end += 1;
                }
            }
            let after = last_content(&lines, at + 1, end, dash).unwrap_or(at) + 1;
            let item = (at + 1..after)
                .find(|&i| lines[i].trim_start().starts_with("- service:"))
                .map(|i| indent(&lines[i]))
                .unwrap_or(dash + 4);
            let pad = " ".repeat(item);
            lines.insert(after, format!("{pad}  translator: {translator}"));
            lines.insert(after, format!("{pad}- service: {source}"));
        }
        None => {
            let dash = entry_indent.unwrap_or(2);
            let after = (section + 1..end)
                .rev()
                .find(|&i| !lines[i].trim().is_empty() && !lines[i].trim_start().starts_with('#'))
                .unwrap_or(section)
                + 1;
            let pad = " ".repeat(dash);
            for (i, l) in [
                format!("{pad}- service: {consumer}"),
                format!("{pad}  sources:"),
                format!("{pad}    - service: {source}"),
                format!("{pad}      translator: {translator}"),
            ]
            .into_iter()
            .enumerate()
            {
                lines.insert(after + i, l);
            }
        }
    }
    lines.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "# keep this comment\napiVersion: seam/v1\nname: t\nservices:\n  - name: a\n    partitions: 1\n    schemas: s\n  - name: b\n    partitions: 1\n    schemas: s\n  - name: c\n    partitions: 1\n    schemas: s\nconsumers:\n  - service: b\n    sources:\n      - service: a\n        translator: a-to-b\n    # b's last source\n";

    /// A topology file in a folder of its own (removed when the returned guard drops).
    fn file(text: &str) -> (Scratch, std::path::PathBuf) {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("seam-topology-edit-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("s")).expect("schemas");
        std::fs::write(dir.join("s/X.avsc"), "{}").expect("schema");
        let path = dir.join("t.yaml");
        std::fs::write(&path, text).expect("write");
        (Scratch(dir), path)
    }

    struct Scratch(std::path::PathBuf);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_source_joins_an_existing_consumer_and_comments_survive() {
        let (_d, path) = file(BASE);
        assert_eq!(add_source(&path, "b", "c").expect("edit"), Edit::Added);
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.starts_with("# keep this comment\n"), "{text}");
        assert!(
            text.contains("      - service: c\n        translator: c-to-b\n"),
            "{text}"
        );
        let t = Topology::load(&path).expect("valid");
        let sources: Vec<_> = t.sources_of("b").iter().map(|s| s.service.clone()).collect();
        assert_eq!(sources, ["a", "c"]);
        assert_eq!(add_source(&path, "b", "c").expect("again"), Edit::AlreadyThere);
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            text,
            "a second run changes nothing"
        );
    }

    #[test]
    fn a_consumer_declared_without_sources_gets_its_first() {
        for declared in ["  - service: c\n    sources: []\n", "  - service: c\n"] {
            let text = format!("{BASE}{declared}");
            let (_d, path) = file(&text);
            assert_eq!(add_source(&path, "c", "a").expect("edit"), Edit::Added, "{declared}");
            let t = Topology::load(&path).expect("still a topology");
            assert_eq!(t.sources_of("c")[0].service, "a", "{declared}");
            assert_eq!(t.sources_of("b").len(), 1, "{declared}");
        }
    }

    #[test]
    fn a_new_consumer_entry_is_appended() {
        let (_d, path) = file(BASE);
        assert_eq!(add_source(&path, "c", "b").expect("edit"), Edit::Added);
        let t = Topology::load(&path).expect("valid");
        assert_eq!(t.sources_of("c")[0].translator, "b-to-c");
        assert_eq!(t.sources_of("b").len(), 1);
    }

    #[test]
    fn unknown_services_and_self_subscriptions_are_refused_without_touching_the_file() {
        let (_d, path) = file(BASE);
        let err = add_source(&path, "b", "nope").expect_err("unknown").to_string();
        assert!(err.contains("`nope` is not a declared service"), "{err}");
        let err = add_source(&path, "b", "b").expect_err("self").to_string();
        assert!(err.contains("its own events"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), BASE);
    }

    #[test]
    fn sequences_written_without_indentation_are_followed() {
        let flat = "apiVersion: seam/v1\nname: t\nservices:\n- name: a\n  partitions: 1\n  schemas: s\n- name: b\n  partitions: 1\n  schemas: s\n- name: c\n  partitions: 1\n  schemas: s\nconsumers:\n- service: b\n  sources:\n  - service: a\n    translator: a-to-b\n- service: c\n  sources:\n  - service: a\n    translator: a-to-c\n";
        let (_d, path) = file(flat);
        assert_eq!(add_source(&path, "b", "c").expect("edit"), Edit::Added);
        assert_eq!(add_source(&path, "c", "b").expect("edit"), Edit::Added);
        assert_eq!(add_source(&path, "a", "b").expect("new entry"), Edit::Added);
        let t = Topology::load(&path).expect("valid");
        assert_eq!(t.sources_of("b").len(), 2);
        assert_eq!(t.sources_of("c").len(), 2);
        assert_eq!(t.sources_of("a").len(), 1);
    }

    #[test]
    fn a_flow_style_file_is_refused_with_the_manual_fix() {
        let flow = BASE.replace(
            "    sources:\n      - service: a\n        translator: a-to-b\n",
            "    sources: [{service: a, translator: a-to-b}]\n",
        );
        let (_d, path) = file(&flow);
        let err = add_source(&path, "b", "c").expect_err("flow").to_string();
        assert!(err.contains("by hand"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), flow);
    }
}
