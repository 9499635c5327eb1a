//! Static checks of TraceQL: which values a field compares with, and how (`status` only with
//! its keywords by equality, durations with durations, `nil` by equality on attributes, regexes
//! on strings, aggregates on numbers); regexes are compiled here, anchored.

use std::sync::Arc;

use super::TraceQlError;
use super::ast::{AggFunc, CmpOp, Field, Intrinsic, Regex, Static};

/// Type-checks `field op value` and compiles the regex of `=~`/`!~`.
pub(super) fn check_comparison(
    field: &Field,
    op: CmpOp,
    value: &Static,
    at: usize,
) -> Result<Option<Regex>, TraceQlError> {
    let bad = |why: String| Err(TraceQlError::at(at, why));
    let equality = matches!(op, CmpOp::Eq | CmpOp::Ne);
    let regex_op = matches!(op, CmpOp::Re | CmpOp::NotRe);
    match (field, value) {
        (_, Static::Nil) if !equality => {
            return bad(format!(
                "`nil` compares only with `=` or `!=`, not `{}`",
                op.as_str()
            ));
        }
        (Field::Intrinsic(i), Static::Nil) => {
            return bad(format!(
                "`{}` is always present; `nil` applies to attributes",
                i.name()
            ));
        }
        (_, Static::Str(_)) if regex_op => {}
        (_, v) if regex_op => {
            return bad(format!("`{}` needs a string pattern, not {v}", op.as_str()));
        }
        (Field::Intrinsic(Intrinsic::Status), Static::Status(_)) if equality => {}
        (Field::Intrinsic(Intrinsic::Status), v) => {
            return bad(format!(
                "`status` compares with `=`/`!=` to error, ok or unset, not {v}"
            ));
        }
        (Field::Intrinsic(Intrinsic::Kind), Static::Kind(_)) if equality => {}
        (Field::Intrinsic(Intrinsic::Kind), v) => {
            return bad(format!(
                "`kind` compares with `=`/`!=` to unspecified, internal, server, client, producer or consumer, not {v}"
            ));
        }
        (Field::Intrinsic(Intrinsic::Duration | Intrinsic::TraceDuration), Static::Duration(_)) => {
        }
        (Field::Intrinsic(i @ (Intrinsic::Duration | Intrinsic::TraceDuration)), v) => {
            return bad(format!(
                "`{}` compares with a duration such as 100ms, not {v}",
                i.name()
            ));
        }
        (Field::Intrinsic(_), Static::Str(_)) => {}
        (Field::Intrinsic(i), v) => {
            return bad(format!(
                "`{}` is a string; compare it with a quoted string, not {v}",
                i.name()
            ));
        }
        (Field::Attr { .. }, v @ (Static::Status(_) | Static::Kind(_))) => {
            return bad(format!(
                "`{v}` is a keyword of `status` or `kind`; quote it to compare an attribute with the string \"{v}\""
            ));
        }
        (Field::Attr { .. }, Static::Bool(_)) if !equality => {
            return bad(format!(
                "booleans compare only with `=` or `!=`, not `{}`",
                op.as_str()
            ));
        }
        _ => {}
    }
    if !regex_op {
        return Ok(None);
    }
    let Static::Str(pattern) = value else {
        return Ok(None);
    };
    let anchored = format!("^(?:{pattern})$");
    let re = regex::RegexBuilder::new(&anchored)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| {
            // The regex crate's message draws the pattern over several lines; keep its last.
            let e = e.to_string();
            let why = e
                .lines()
                .last()
                .unwrap_or_default()
                .trim_start_matches("error: ");
            TraceQlError::at(at, format!("invalid regular expression {pattern:?}: {why}"))
        })?;
    Ok(Some(Regex(Arc::new(re))))
}

pub(super) fn check_aggregate(
    func: AggFunc,
    field: Option<&Field>,
    op: CmpOp,
    value: &Static,
    at: usize,
) -> Result<(), TraceQlError> {
    if matches!(op, CmpOp::Re | CmpOp::NotRe) {
        return Err(TraceQlError::at(
            at,
            format!(
                "`{}()` compares with numbers, not `{}`",
                func.as_str(),
                op.as_str()
            ),
        ));
    }
    let durations = matches!(
        field,
        Some(Field::Intrinsic(
            Intrinsic::Duration | Intrinsic::TraceDuration
        ))
    );
    let ok = match value {
        Static::Int(_) | Static::Float(_) => !durations,
        Static::Duration(_) => {
            durations || (func != AggFunc::Count && matches!(field, Some(Field::Attr { .. })))
        }
        _ => false,
    };
    if !ok {
        let want = if durations {
            "a duration such as 100ms"
        } else {
            "a number"
        };
        return Err(TraceQlError::at(
            at,
            format!(
                "`{}()` here compares with {want}, not {value}",
                func.as_str()
            ),
        ));
    }
    if let Some(Field::Intrinsic(i)) = field
        && !durations
    {
        return Err(TraceQlError::at(
            at,
            format!(
                "`{}()` needs a numeric field; `{}` is not one",
                func.as_str(),
                i.name()
            ),
        ));
    }
    Ok(())
}
