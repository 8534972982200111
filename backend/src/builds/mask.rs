//! Build args never reach the log: their values are masked in every line of a build's output
//! before it is stored or shown (as CI systems mask their secrets).

/// What a masked value shows as.
pub const MASK: &str = "***";
/// Shorter values are not masked: masking `1` or `on` would garble every line and hide nothing.
pub const MIN_MASKED_LEN: usize = 4;

/// The values to mask, longest first (so a value that contains another is masked whole).
pub fn secrets<'a>(values: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    let mut values: Vec<String> = values
        .into_iter()
        .filter(|v| v.len() >= MIN_MASKED_LEN)
        .cloned()
        .collect();
    values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    values.dedup();
    values
}

/// `line` with every occurrence of each secret replaced by [`MASK`].
pub fn mask(line: &str, secrets: &[String]) -> String {
    let mut line = line.to_owned();
    for secret in secrets {
        if line.contains(secret.as_str()) {
            line = line.replace(secret.as_str(), MASK);
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_masked_wherever_they_appear_and_short_ones_are_left() {
        let values = [
            "hunter2-secret".to_owned(),
            "hunter2".to_owned(),
            "on".to_owned(),
        ];
        let secrets = secrets(&values);
        assert_eq!(secrets, vec!["hunter2-secret", "hunter2"]);
        let cases = [
            (
                "Step 2/3 : RUN echo hunter2-secret",
                "Step 2/3 : RUN echo ***",
            ),
            ("a hunter2 b hunter2", "a *** b ***"),
            ("turn it on", "turn it on"),
        ];
        for (line, want) in cases {
            assert_eq!(mask(line, &secrets), want);
        }
    }
}
