//! eKuiper's wording of a wrong number of arguments: each function's validator says it its own
//! way (`Expect 2 arguments but found 3.`, `At least has 2 argument but found 1.`, `Expect 1 or
//! 2 arguments only`, `too many arguments`, ...), and rules moved over from eKuiper match on the
//! text. The compiler puts the function's name before it, as it does for eKuiper's other
//! validation errors (`round: Expect 1 or 2 arguments only`).

/// What eKuiper's validator of `name` says when it gets `got` arguments, where the function
/// takes `min` to `max` (`None`: any number from `min`).
pub fn message(name: &str, min: usize, max: Option<usize>, got: usize) -> String {
    if let Some(text) = own_words(name, got) {
        return text;
    }
    match max {
        Some(max) if max == min => format!("Expect {min} arguments but found {got}."),
        None => format!("At least has {min} argument but found {got}."),
        // eKuiper's `format` checks only the lower bound; its texts for `2 or 3` are below.
        Some(_) if got < min => format!("At least has {min} argument but found {got}."),
        Some(max) => format!("Expect {min} to {max} arguments but found {got}."),
    }
}

/// The functions whose validator has a text of its own.
fn own_words(name: &str, got: usize) -> Option<String> {
    Some(match name {
        "round" | "log" => "Expect 1 or 2 arguments only".to_string(),
        "now" | "current_timestamp" | "local_time" | "local_timestamp" | "cur_time"
        | "current_time" => "too many arguments".to_string(),
        "array_join" | "sequence" => format!("Expect two or three arguments but found {got}."),
        "substring" => "the arguments for substring should be 2 or 3".to_string(),
        "split_value" => "the arguments for split_value should be 3".to_string(),
        "concat" | "coalesce" => "The arguments should be at least one.".to_string(),
        "erase" => format!("the argument number should be 2, got {got}"),
        "changed_cols" => format!("expect more than two args but got {got}"),
        "had_changed" => format!("expect more than one arg but got {got}"),
        "lag" => format!("expect one two or three args but got {got}"),
        "latest" => format!("expect one or two args but got {got}"),
        "acc_avg" | "acc_max" | "acc_min" | "acc_sum" | "acc_count" => {
            format!("Expect 1/3 arguments but found {got}.")
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::message;

    #[test]
    fn the_shapes_are_ekuipers() {
        assert_eq!(
            message("abs", 1, Some(1), 2),
            "Expect 1 arguments but found 2."
        );
        assert_eq!(
            message("cur_date", 0, Some(0), 1),
            "Expect 0 arguments but found 1."
        );
        assert_eq!(
            message("object_pick", 2, None, 1),
            "At least has 2 argument but found 1."
        );
        assert_eq!(
            message("format", 2, Some(3), 1),
            "At least has 2 argument but found 1."
        );
        assert_eq!(
            message("round", 1, Some(2), 3),
            "Expect 1 or 2 arguments only"
        );
        assert_eq!(message("now", 0, Some(1), 2), "too many arguments");
        assert_eq!(
            message("acc_sum", 1, Some(3), 2),
            "Expect 1/3 arguments but found 2."
        );
    }
}
