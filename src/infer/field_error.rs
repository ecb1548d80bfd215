//! A settings check that failed, as a value: which setting, and what is
//! wrong with it. Callers that place settings in a larger file (the config)
//! build their own key from [`FieldError::key`]; everyone else sees one sentence.

/// One setting that failed its check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.sentence())]
pub struct FieldError {
    /// The sub-table the setting is in (`anchors`), when the check ran on
    /// one nested in the checked settings.
    pub table: Option<&'static str>,
    /// The setting at fault below `table` (`threshold`,
    /// `label_thresholds.dog`); empty when the table as a whole is.
    pub field: String,
    /// What is wrong, as it reads after the setting's name.
    pub message: String,
    form: Form,
}

/// How the sentence is made from the parts: fixed, so it reads as it
/// always has in logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// `threshold must be between 0 and 1, not 1.5`
    Named,
    /// `box_scales: 0 is not a positive number`
    Labelled,
    /// The message alone: it names the setting itself, or there is none.
    Alone,
}

impl FieldError {
    /// Reads `<field> <message>`.
    pub fn named(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(field.into(), message.into(), Form::Named)
    }

    /// Reads `<field>: <message>`.
    pub fn labelled(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(field.into(), message.into(), Form::Labelled)
    }

    /// Reads `<message>` alone; `field` (maybe empty) is still the key.
    pub fn alone(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(field.into(), message.into(), Form::Alone)
    }

    fn new(field: String, message: String, form: Form) -> Self {
        FieldError {
            table: None,
            field,
            message,
            form,
        }
    }

    /// The same error, found while checking sub-table `table`.
    pub fn within(mut self, table: &'static str) -> Self {
        self.table = Some(table);
        self
    }

    /// The dotted key below the checked settings: `anchors.num_layers`,
    /// `threshold`, `anchors`; empty for the settings as a whole.
    pub fn key(&self) -> String {
        match (self.table, self.field.is_empty()) {
            (Some(t), true) => t.to_string(),
            (Some(t), false) => format!("{t}.{}", self.field),
            (None, _) => self.field.clone(),
        }
    }
}

impl FieldError {
    /// The error as one sentence, as logs and [`super::InferError`] show it.
    fn sentence(&self) -> String {
        let prefix = self.table.map(|t| format!("{t}: ")).unwrap_or_default();
        match self.form {
            Form::Named => format!("{prefix}{} {}", self.field, self.message),
            Form::Labelled => format!("{prefix}{}: {}", self.field, self.message),
            Form::Alone => format!("{prefix}{}", self.message),
        }
    }
}

impl From<FieldError> for super::InferError {
    fn from(e: FieldError) -> Self {
        super::InferError::Settings(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentence_and_key() {
        let e = FieldError::named("threshold", "must be between 0 and 1, not 1.5");
        assert_eq!(e.to_string(), "threshold must be between 0 and 1, not 1.5");
        assert_eq!(e.key(), "threshold");
        let e = FieldError::named("num_layers", "must be at least 1").within("anchors");
        assert_eq!(e.to_string(), "anchors: num_layers must be at least 1");
        assert_eq!(e.key(), "anchors.num_layers");
        let e = FieldError::labelled("box_scales", "0 is not a positive number");
        assert_eq!(e.to_string(), "box_scales: 0 is not a positive number");
        let e = FieldError::alone("", "more than 9 anchors").within("anchors");
        assert_eq!(e.to_string(), "anchors: more than 9 anchors");
        assert_eq!(e.key(), "anchors");
    }
}
