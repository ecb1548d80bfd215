//! Label files: `id name` lines (COCO ids with gaps) or one name a line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::InferError;

/// Largest label file read: thousands of names are a few hundred KB.
const MAX_LABELS_BYTES: u64 = 16 << 20;

/// Reads a label file as UTF-8, refusing devices and FIFOs (which could
/// block or never end) and files over [`MAX_LABELS_BYTES`].
fn read_bounded(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let meta = std::fs::metadata(path)?;
    if let Some(kind) = crate::tflite::model_file::file_kind(&meta) {
        return Err(std::io::Error::other(format!("it is {kind}, not a regular file")));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_LABELS_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_LABELS_BYTES {
        return Err(std::io::Error::other(format!(
            "it is over the bound of {} MiB for label files",
            MAX_LABELS_BYTES >> 20
        )));
    }
    String::from_utf8(bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Class id -> name. Ids the file does not name print as `class N`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Labels {
    names: BTreeMap<u32, String>,
    /// True for `id name` files, false for one name a line.
    explicit_ids: bool,
    source: Option<PathBuf>,
}

impl Labels {
    /// Reads and parses a label file.
    pub fn load(path: &Path) -> Result<Self, InferError> {
        let text = read_bounded(path).map_err(|cause| InferError::LabelsRead {
            path: path.to_path_buf(),
            cause,
        })?;
        let mut labels = Self::parse(&text).map_err(|(line, reason)| InferError::LabelsInvalid {
            path: path.to_path_buf(),
            line,
            reason,
        })?;
        labels.source = Some(path.to_path_buf());
        Ok(labels)
    }

    /// Parses label text. The format is `id name` when every non-empty line
    /// starts with a number followed by whitespace and a name; otherwise each
    /// line (empty ones included, as they hold a place) is one name.
    pub fn parse(text: &str) -> Result<Self, (usize, String)> {
        // Editors on Windows save UTF-8 with a BOM; it is no part of the
        // first label (and would hide its id).
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
        let non_empty: Vec<(usize, &str)> = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| (i + 1, l.trim()))
            .collect();
        if non_empty.is_empty() {
            return Err((1, "the file holds no labels".into()));
        }
        let explicit = non_empty.iter().all(|(_, l)| split_id(l).is_some());
        let mut names = BTreeMap::new();
        if explicit {
            for (line, l) in non_empty {
                let (id, name) = split_id(l).expect("checked above");
                if names.insert(id, name.to_string()).is_some() {
                    return Err((line, format!("class id {id} appears twice")));
                }
            }
        } else {
            // A trailing newline yields no extra line with `lines()`.
            for (i, l) in lines.iter().enumerate() {
                names.insert(i as u32, l.trim().to_string());
            }
        }
        Ok(Labels {
            names,
            explicit_ids: explicit,
            source: None,
        })
    }

    /// The name for a class id.
    pub fn name(&self, id: u32) -> String {
        match self.names.get(&id) {
            Some(n) if !n.is_empty() => n.clone(),
            _ => format!("class {id}"),
        }
    }

    /// The name for a class id without allocating, if the file names it.
    pub fn get(&self, id: u32) -> Option<&str> {
        self.names.get(&id).map(String::as_str).filter(|n| !n.is_empty())
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// The label names a filter mentions (allow, deny, per-label
    /// thresholds) that no class of these labels has: most likely typos,
    /// which would otherwise filter nothing without a word.
    pub fn unknown_in(&self, filter: &super::FilterSettings) -> Vec<String> {
        let known = |name: &str| {
            self.names.values().any(|n| n == name)
                || name
                    .strip_prefix("class ")
                    .and_then(|id| id.parse::<u32>().ok())
                    .is_some_and(|id| self.get(id).is_none())
        };
        let mut unknown: Vec<String> = filter
            .allow
            .iter()
            .chain(&filter.deny)
            .chain(filter.label_thresholds.keys())
            .filter(|n| !known(n))
            .cloned()
            .collect();
        unknown.sort();
        unknown.dedup();
        unknown
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Largest class id the file names.
    pub fn max_id(&self) -> Option<u32> {
        self.names.keys().next_back().copied()
    }

    pub fn is_explicit(&self) -> bool {
        self.explicit_ids
    }

    /// Checks that the labels fit a model with `num_classes` outputs per box.
    /// `id name` files may leave gaps but must not name ids the model cannot
    /// produce; one-name-a-line files must have exactly one line per class.
    pub fn check_fits(&self, num_classes: usize) -> Result<(), InferError> {
        let path = self.source.clone().unwrap_or_else(|| PathBuf::from("<labels>"));
        let reason = if self.explicit_ids {
            match self.max_id() {
                Some(max) if max as usize >= num_classes => Some(format!(
                    "it names class id {max}, but the model has only {num_classes} classes (ids 0..{})",
                    num_classes.saturating_sub(1)
                )),
                _ => None,
            }
        } else if self.names.len() != num_classes {
            Some(format!(
                "it has {} labels, but the model has {num_classes} classes",
                self.names.len()
            ))
        } else {
            None
        };
        match reason {
            Some(reason) => Err(InferError::LabelsMismatch { path, reason }),
            None => Ok(()),
        }
    }
}

fn split_id(line: &str) -> Option<(u32, &str)> {
    let end = line.find(|c: char| !c.is_ascii_digit())?;
    if end == 0 {
        return None;
    }
    let rest = &line[end..];
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let name = rest.trim();
    if name.is_empty() {
        return None;
    }
    Some((line[..end].parse().ok()?, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_names_that_no_class_has_are_found() {
        let labels = Labels::parse("0 person\n2 car\n3 traffic light\n").unwrap();
        let mut f = crate::infer::FilterSettings {
            allow: vec!["person".into(), "persn".into(), "class 1".into()],
            deny: vec!["car".into(), "class 2".into()],
            ..Default::default()
        };
        f.label_thresholds.insert("traffic light".into(), 0.3);
        f.label_thresholds.insert("trafic light".into(), 0.3);
        // "class 1" is how an unnamed id prints; "class 2" has a name.
        assert_eq!(labels.unknown_in(&f), ["class 2", "persn", "trafic light"]);
    }

    #[test]
    fn id_name_files_keep_gaps() {
        let l = Labels::parse("0  person\n1  bicycle\n16  cat\n17  dog\n").unwrap();
        assert!(l.is_explicit());
        assert_eq!(l.name(16), "cat");
        assert_eq!(l.name(17), "dog");
        assert_eq!(l.name(5), "class 5");
        assert_eq!(l.max_id(), Some(17));
        assert!(l.check_fits(90).is_ok());
        let err = l.check_fits(10).unwrap_err().to_string();
        assert!(err.contains("class id 17"), "{err}");
    }

    #[test]
    fn a_leading_utf8_bom_is_ignored() {
        let plain = Labels::parse("0  person\r\n1  bicycle\r\n").unwrap();
        let bom = Labels::parse("\u{feff}0  person\r\n1  bicycle\r\n").unwrap();
        assert_eq!(bom, plain);
        assert!(bom.is_explicit());
        assert_eq!(bom.name(0), "person");
        let bom = Labels::parse("\u{feff}???\nBicycle\n").unwrap();
        assert_eq!(bom.name(0), "???");
        // Only a leading one: elsewhere it is part of a name.
        let l = Labels::parse("a\n\u{feff}b\n").unwrap();
        assert_eq!(l.name(1), "\u{feff}b");
        assert!(Labels::parse("\u{feff}").is_err());
    }

    #[test]
    fn devices_and_huge_files_are_not_read_as_labels() {
        let e = Labels::load(Path::new("/dev/zero")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot read labels /dev/zero: it is a character device, not a regular file"
        );
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.txt");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(MAX_LABELS_BYTES + 1)
            .unwrap();
        let e = Labels::load(&big).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("over the bound of 16 MiB for label files"),
            "{e}"
        );
        let latin1 = dir.path().join("latin1.txt");
        std::fs::write(&latin1, b"caf\xe9\n").unwrap();
        assert!(matches!(
            Labels::load(&latin1),
            Err(InferError::LabelsRead { .. })
        ));
    }

    #[test]
    fn one_name_a_line_files_count_lines() {
        let l = Labels::parse("???\nBicycle\nBoot\nHigh heels\n").unwrap();
        assert!(!l.is_explicit());
        assert_eq!(l.len(), 4);
        assert_eq!(l.name(3), "High heels");
        assert!(l.check_fits(4).is_ok());
        let err = l.check_fits(24).unwrap_err().to_string();
        assert!(err.contains("4 labels") && err.contains("24 classes"), "{err}");
    }

    #[test]
    fn mixed_lines_are_names_and_duplicates_are_errors() {
        let l = Labels::parse("1 one\ntwo\n").unwrap();
        assert!(!l.is_explicit());
        assert_eq!(l.name(0), "1 one");
        let (line, msg) = Labels::parse("1 a\n2 b\n1 c\n").unwrap_err();
        assert_eq!(line, 3);
        assert!(msg.contains("twice"));
        assert!(Labels::parse("\n\n").is_err());
    }
}

/// A label file beside `model`, for when none was given: `NAME.txt`,
/// `NAME_labels.txt` or `labels.txt` in the model's directory (NAME is the
/// model's file name without `.tflite`), the first that exists.
pub fn beside_model(model: &std::path::Path) -> Option<std::path::PathBuf> {
    let dir = model.parent()?;
    let stem = model.file_stem()?.to_str()?;
    [
        format!("{stem}.txt"),
        format!("{stem}_labels.txt"),
        "labels.txt".to_string(),
    ]
    .into_iter()
    .map(|name| dir.join(name))
    .find(|p| p.is_file())
}

#[cfg(test)]
mod beside_tests {
    use super::beside_model;

    #[test]
    fn finds_the_label_file_beside_the_model() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("mine.tflite");
        assert_eq!(beside_model(&model), None);
        std::fs::write(dir.path().join("labels.txt"), "a\n").unwrap();
        assert_eq!(beside_model(&model), Some(dir.path().join("labels.txt")));
        std::fs::write(dir.path().join("mine_labels.txt"), "a\n").unwrap();
        assert_eq!(beside_model(&model), Some(dir.path().join("mine_labels.txt")));
        std::fs::write(dir.path().join("mine.txt"), "a\n").unwrap();
        assert_eq!(beside_model(&model), Some(dir.path().join("mine.txt")));
    }
}
