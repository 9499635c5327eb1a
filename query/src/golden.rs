//! Golden files shared by the query languages' tests (TraceQL, LogQL): a query per line,
//! each followed by `=> ` and what the code answers; `LOUPE_UPDATE_GOLDEN=1` rewrites the
//! answers from what the code now says, for review in the diff.

/// Checks (or with `LOUPE_UPDATE_GOLDEN=1` rewrites) the golden file `dir/file` (relative to
/// the crate): every query line is followed by an `=> ` line, which must be `answer(query)`.
pub fn check(dir: &str, file: &str, answer: impl Fn(&str) -> String) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(dir)
        .join(file);
    let text = std::fs::read_to_string(&path).expect("golden file");
    let update = std::env::var("LOUPE_UPDATE_GOLDEN").is_ok_and(|v| v == "1");
    let mut out = String::new();
    let mut failures = Vec::new();
    let mut query: Option<String> = None;
    for line in text.lines() {
        if let Some(expected) = line.strip_prefix("=> ") {
            let q = query
                .take()
                .unwrap_or_else(|| panic!("`=> ` without a query in {file}"));
            let got = answer(&q);
            if got != expected {
                failures.push(format!("query: {q}\n  want: {expected}\n  got:  {got}"));
            }
            out.push_str(&format!("=> {got}\n"));
            continue;
        }
        if !line.trim().is_empty() && !line.starts_with('#') {
            assert!(
                query.is_none(),
                "query without `=> ` line in {file}: {line}"
            );
            query = Some(line.to_string());
        }
        out.push_str(line);
        out.push('\n');
    }
    assert!(query.is_none(), "last query in {file} has no `=> ` line");
    if update {
        std::fs::write(&path, out).expect("rewrite golden file");
    } else {
        assert!(
            failures.is_empty(),
            "{} golden case(s) of {file} differ (LOUPE_UPDATE_GOLDEN=1 rewrites them):\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}
