//! Message components and modals: Discord's validation of the action rows a bot puts on a
//! message (buttons, string selects) and of the modals it shows, and what a member does with
//! them: pressing a button or choosing in a select (a MESSAGE_COMPONENT interaction) and
//! sending a modal (MODAL_SUBMIT), as the `/sim` control routes ask.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::rest::JsonReply;

/// Discord's limits on components.
const ROWS_MAX: usize = 5;
const BUTTONS_PER_ROW: usize = 5;
const CUSTOM_ID_CHARS: usize = 100;
const BUTTON_LABEL_CHARS: usize = 80;
const SELECT_OPTIONS_MAX: usize = 25;
const OPTION_TEXT_CHARS: usize = 100;
const PLACEHOLDER_CHARS: usize = 150;
const MODAL_TITLE_CHARS: usize = 45;
const TEXT_INPUT_LABEL_CHARS: usize = 45;
const TEXT_INPUT_VALUE_CHARS: u64 = 4000;

const ACTION_ROW: u64 = 1;
const BUTTON: u64 = 2;
const STRING_SELECT: u64 = 3;
const TEXT_INPUT: u64 = 4;
/// Button styles: primary, secondary, success, danger, link.
const LINK_STYLE: u64 = 5;

/// A field of Discord's `Invalid Form Body` (50035) answer.
fn invalid(field: &str, code: &str, message: &str) -> JsonReply {
    JsonReply {
        status: axum::http::StatusCode::BAD_REQUEST,
        body: json!({
            "message": "Invalid Form Body",
            "code": 50035,
            "errors": {field: {"_errors": [{"code": code, "message": message}]}},
        }),
    }
}

fn chars(value: &Value) -> usize {
    value.as_str().map_or(0, |s| s.chars().count())
}

fn length_error(field: &str, max: usize) -> JsonReply {
    invalid(
        field,
        "BASE_TYPE_BAD_LENGTH",
        &format!("Must be between 1 and {max} in length."),
    )
}

/// A custom id that is 1–100 chars and unique among `seen`.
fn check_custom_id(
    field: &str,
    component: &Value,
    seen: &mut HashSet<String>,
) -> Result<(), JsonReply> {
    let custom_id = component.get("custom_id");
    let n = custom_id.map_or(0, chars);
    if !(1..=CUSTOM_ID_CHARS).contains(&n) {
        return Err(length_error(&format!("{field}.custom_id"), CUSTOM_ID_CHARS));
    }
    let custom_id = custom_id.and_then(Value::as_str).unwrap_or_default();
    if !seen.insert(custom_id.to_owned()) {
        return Err(invalid(
            &format!("{field}.custom_id"),
            "COMPONENT_CUSTOM_ID_DUPLICATED",
            "Component custom id cannot be duplicated",
        ));
    }
    Ok(())
}

/// Checks a message's `components` as Discord does: up to 5 action rows, each with up to 5
/// buttons or one string select; custom ids 1–100 chars and unique in the message; a link
/// button has a `url` and no custom id; a select 1–25 options with unique values and
/// `min_values ≤ max_values ≤ options`.
pub(crate) fn check_message_components(components: &Value) -> Result<(), JsonReply> {
    let rows = match components {
        Value::Null => return Ok(()),
        Value::Array(rows) => rows,
        _ => {
            return Err(invalid(
                "components",
                "LIST_TYPE_CONVERT",
                "Only iterables may be used in a ListType",
            ));
        }
    };
    if rows.len() > ROWS_MAX {
        return Err(invalid(
            "components",
            "BASE_TYPE_MAX_LENGTH",
            "Must be 5 or fewer in length.",
        ));
    }
    let mut seen = HashSet::new();
    for (r, row) in rows.iter().enumerate() {
        let field = format!("components.{r}");
        if row.get("type").and_then(Value::as_u64) != Some(ACTION_ROW) {
            return Err(invalid(
                &format!("{field}.type"),
                "UNION_TYPE_CHOICES",
                "Value of field \"type\" must be one of (1,).",
            ));
        }
        let children = row
            .get("components")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        if children.is_empty() || children.len() > BUTTONS_PER_ROW {
            return Err(invalid(
                &format!("{field}.components"),
                "BASE_TYPE_BAD_LENGTH",
                "Must be between 1 and 5 in length.",
            ));
        }
        let selects = children
            .iter()
            .filter(|c| c.get("type").and_then(Value::as_u64) == Some(STRING_SELECT))
            .count();
        if selects > 0 && children.len() > 1 {
            return Err(invalid(
                &format!("{field}.components"),
                "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                "The specified component exceeds the maximum width",
            ));
        }
        for (c, child) in children.iter().enumerate() {
            let field = format!("{field}.components.{c}");
            match child.get("type").and_then(Value::as_u64) {
                Some(BUTTON) => check_button(&field, child, &mut seen)?,
                Some(STRING_SELECT) => check_select(&field, child, &mut seen)?,
                _ => {
                    return Err(invalid(
                        &format!("{field}.type"),
                        "UNION_TYPE_CHOICES",
                        "Value of field \"type\" must be one of (2, 3).",
                    ));
                }
            }
        }
    }
    Ok(())
}

fn check_button(field: &str, button: &Value, seen: &mut HashSet<String>) -> Result<(), JsonReply> {
    let style = button.get("style").and_then(Value::as_u64);
    if !matches!(style, Some(1..=LINK_STYLE)) {
        return Err(invalid(
            &format!("{field}.style"),
            "BASE_TYPE_CHOICES",
            "Value must be one of (1, 2, 3, 4, 5).",
        ));
    }
    if let Some(label) = button.get("label").filter(|l| !l.is_null())
        && chars(label) > BUTTON_LABEL_CHARS
    {
        return Err(length_error(&format!("{field}.label"), BUTTON_LABEL_CHARS));
    }
    let has_label = button.get("label").is_some_and(|l| chars(l) > 0);
    let has_emoji = button.get("emoji").is_some_and(|e| !e.is_null());
    if !has_label && !has_emoji {
        return Err(invalid(
            &format!("{field}.label"),
            "BUTTON_COMPONENT_INVALID",
            "A button needs a label or an emoji",
        ));
    }
    if style == Some(LINK_STYLE) {
        let url = button
            .get("url")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !(url.starts_with("https://") || url.starts_with("http://"))
            || button.get("custom_id").is_some_and(|c| !c.is_null())
        {
            return Err(invalid(
                &format!("{field}.url"),
                "BUTTON_COMPONENT_URL_REQUIRED",
                "A link button has a url and no custom_id",
            ));
        }
        return Ok(());
    }
    check_custom_id(field, button, seen)
}

fn check_select(field: &str, select: &Value, seen: &mut HashSet<String>) -> Result<(), JsonReply> {
    check_custom_id(field, select, seen)?;
    if select
        .get("placeholder")
        .is_some_and(|p| chars(p) > PLACEHOLDER_CHARS)
    {
        return Err(length_error(
            &format!("{field}.placeholder"),
            PLACEHOLDER_CHARS,
        ));
    }
    let options = select
        .get("options")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    if options.is_empty() || options.len() > SELECT_OPTIONS_MAX {
        return Err(invalid(
            &format!("{field}.options"),
            "BASE_TYPE_BAD_LENGTH",
            "Must be between 1 and 25 in length.",
        ));
    }
    let mut values = HashSet::new();
    for (o, option) in options.iter().enumerate() {
        for key in ["label", "value"] {
            let n = option.get(key).map_or(0, chars);
            if !(1..=OPTION_TEXT_CHARS).contains(&n) {
                return Err(length_error(
                    &format!("{field}.options.{o}.{key}"),
                    OPTION_TEXT_CHARS,
                ));
            }
        }
        let value = option
            .get("value")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !values.insert(value) {
            return Err(invalid(
                &format!("{field}.options.{o}.value"),
                "SELECT_COMPONENT_OPTION_VALUE_DUPLICATED",
                "Select component option values cannot be duplicated",
            ));
        }
    }
    let (min, max) = select_bounds(select);
    if min > max || max as usize > options.len() || max > SELECT_OPTIONS_MAX as u64 {
        return Err(invalid(
            &format!("{field}.max_values"),
            "SELECT_COMPONENT_MAX_VALUES_INVALID",
            "max_values must be at least min_values and at most the number of options",
        ));
    }
    Ok(())
}

/// `min_values` and `max_values` of a select (1 and 1 by default).
fn select_bounds(select: &Value) -> (u64, u64) {
    let get = |key: &str| select.get(key).and_then(Value::as_u64).unwrap_or(1);
    (get("min_values"), get("max_values"))
}

/// Checks a modal callback's `data` (type 9): `custom_id` 1–100 chars, `title` 1–45,
/// 1–5 action rows each holding one text input (custom id unique, `label` 1–45, `style`
/// 1 or 2, `min_length ≤ max_length ≤ 4000`).
pub(crate) fn check_modal(data: &Value) -> Result<(), JsonReply> {
    let mut seen = HashSet::new();
    if !(1..=CUSTOM_ID_CHARS).contains(&data.get("custom_id").map_or(0, chars)) {
        return Err(length_error("data.custom_id", CUSTOM_ID_CHARS));
    }
    if !(1..=MODAL_TITLE_CHARS).contains(&data.get("title").map_or(0, chars)) {
        return Err(length_error("data.title", MODAL_TITLE_CHARS));
    }
    let rows = data
        .get("components")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    if rows.is_empty() || rows.len() > ROWS_MAX {
        return Err(invalid(
            "data.components",
            "BASE_TYPE_BAD_LENGTH",
            "Must be between 1 and 5 in length.",
        ));
    }
    for (r, row) in rows.iter().enumerate() {
        let field = format!("data.components.{r}");
        let inputs = row
            .get("components")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        if row.get("type").and_then(Value::as_u64) != Some(ACTION_ROW) || inputs.len() != 1 {
            return Err(invalid(
                &format!("{field}.components"),
                "BASE_TYPE_BAD_LENGTH",
                "Must be 1 in length.",
            ));
        }
        let input = &inputs[0];
        let field = format!("{field}.components.0");
        if input.get("type").and_then(Value::as_u64) != Some(TEXT_INPUT) {
            return Err(invalid(
                &format!("{field}.type"),
                "UNION_TYPE_CHOICES",
                "Value of field \"type\" must be one of (4,).",
            ));
        }
        check_custom_id(&field, input, &mut seen)?;
        if !(1..=TEXT_INPUT_LABEL_CHARS).contains(&input.get("label").map_or(0, chars)) {
            return Err(length_error(
                &format!("{field}.label"),
                TEXT_INPUT_LABEL_CHARS,
            ));
        }
        if !matches!(input.get("style").and_then(Value::as_u64), Some(1 | 2)) {
            return Err(invalid(
                &format!("{field}.style"),
                "BASE_TYPE_CHOICES",
                "Value must be one of (1, 2).",
            ));
        }
        let (min, max) = text_bounds(input);
        if min > max || max > TEXT_INPUT_VALUE_CHARS {
            return Err(invalid(
                &format!("{field}.max_length"),
                "NUMBER_TYPE_MAX",
                "int value should be less than or equal to 4000.",
            ));
        }
    }
    Ok(())
}

/// `min_length` (0) and `max_length` (4000) of a text input.
fn text_bounds(input: &Value) -> (u64, u64) {
    (
        input.get("min_length").and_then(Value::as_u64).unwrap_or(0),
        input
            .get("max_length")
            .and_then(Value::as_u64)
            .unwrap_or(TEXT_INPUT_VALUE_CHARS),
    )
}

/// Every component of a message's action rows.
fn children(components: &Value) -> impl Iterator<Item = &Value> {
    components
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|row| row.get("components").and_then(Value::as_array))
        .flatten()
}

/// Why a member's use of a component or modal was refused (the control route's 400).
pub(crate) type Refusal = String;

/// The `data` of a MESSAGE_COMPONENT interaction for a member using `custom_id` of a
/// message's components, choosing `values` in a select: refused for a component that is
/// not there, a disabled one, a link button, values given to a button, or values a select
/// does not offer or in a count it does not take.
pub(crate) fn use_component(
    components: &Value,
    custom_id: &str,
    values: Option<&[String]>,
) -> Result<Value, Refusal> {
    let component = children(components)
        .find(|c| c.get("custom_id").and_then(Value::as_str) == Some(custom_id))
        .ok_or_else(|| format!("the message has no component {custom_id:?}"))?;
    if component.get("disabled").and_then(Value::as_bool) == Some(true) {
        return Err(format!("component {custom_id:?} is disabled"));
    }
    match component.get("type").and_then(Value::as_u64) {
        Some(BUTTON) => {
            if values.is_some() {
                return Err(format!("{custom_id:?} is a button: it takes no values"));
            }
            Ok(json!({"custom_id": custom_id, "component_type": BUTTON}))
        }
        Some(STRING_SELECT) => {
            let values = values.unwrap_or(&[]);
            let (min, max) = select_bounds(component);
            if !(min..=max).contains(&(values.len() as u64)) {
                return Err(format!(
                    "{custom_id:?} takes {min} to {max} values, not {}",
                    values.len()
                ));
            }
            let offered: HashSet<&str> = component
                .get("options")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|o| o.get("value").and_then(Value::as_str))
                .collect();
            if let Some(value) = values.iter().find(|v| !offered.contains(v.as_str())) {
                return Err(format!("{custom_id:?} offers no value {value:?}"));
            }
            Ok(json!({
                "custom_id": custom_id,
                "component_type": STRING_SELECT,
                "values": values,
            }))
        }
        _ => Err(format!("{custom_id:?} cannot be used")),
    }
}

/// The `data` of a MODAL_SUBMIT for a member who filled in `modal` with `answers` (by text
/// input custom id): refused for an unknown field, a required one left empty, or a value
/// outside its length bounds. Fields not answered are sent empty, as Discord does.
pub(crate) fn submit_modal(modal: &Value, answers: &[(String, String)]) -> Result<Value, Refusal> {
    let inputs: Vec<&Value> = children(modal.get("components").unwrap_or(&Value::Null)).collect();
    let id_of = |input: &Value| {
        input
            .get("custom_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    if let Some((unknown, _)) = answers
        .iter()
        .find(|(id, _)| !inputs.iter().any(|i| id_of(i) == *id))
    {
        return Err(format!("the modal has no field {unknown:?}"));
    }
    let mut rows = Vec::with_capacity(inputs.len());
    // Discord numbers every component of the modal in order: the row, then its input.
    for (index, input) in (0_u64..).zip(inputs) {
        let id = id_of(input);
        let value = answers
            .iter()
            .find(|(answered, _)| *answered == id)
            .map_or("", |(_, v)| v.as_str());
        let required = input
            .get("required")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let (min, max) = text_bounds(input);
        let n = value.chars().count() as u64;
        if n == 0 && required {
            return Err(format!("field {id:?} is required"));
        }
        if n > 0 && !(min..=max).contains(&n) {
            return Err(format!(
                "field {id:?} takes {min} to {max} characters, not {n}"
            ));
        }
        let (row_id, input_id) = (2 * index + 1, 2 * index + 2);
        rows.push(json!({
            "type": ACTION_ROW,
            "id": row_id,
            "components": [{"type": TEXT_INPUT, "id": input_id, "custom_id": id, "value": value}],
        }));
    }
    Ok(json!({
        "custom_id": modal.get("custom_id").cloned().unwrap_or(Value::Null),
        "components": rows,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn button(custom_id: &str) -> Value {
        json!({"type": 2, "style": 1, "label": "Open", "custom_id": custom_id})
    }

    fn select() -> Value {
        json!({"type": 3, "custom_id": "topic", "options": [
            {"label": "Billing", "value": "billing"},
            {"label": "Other", "value": "other"},
        ]})
    }

    #[test]
    fn components_are_validated_as_discord_does() {
        let ok = json!([{"type": 1, "components": [button("a"), button("b")]},
                        {"type": 1, "components": [select()]}]);
        assert!(check_message_components(&ok).is_ok());
        let dup = json!([{"type": 1, "components": [button("a"), button("a")]}]);
        assert_eq!(
            check_message_components(&dup).unwrap_err().body["code"],
            50035
        );
        let six: Vec<Value> = (0..6).map(|i| button(&format!("b{i}"))).collect();
        assert!(check_message_components(&json!([{"type": 1, "components": six}])).is_err());
        let mixed = json!([{"type": 1, "components": [select(), button("x")]}]);
        assert!(check_message_components(&mixed).is_err());
        let bare = json!([button("a")]);
        assert!(
            check_message_components(&bare).is_err(),
            "buttons go in rows"
        );
        let long = "x".repeat(101);
        let long_id = json!([{"type": 1, "components": [button(&long)]}]);
        assert!(check_message_components(&long_id).is_err());
    }

    #[test]
    fn a_member_uses_only_what_the_message_offers() {
        let rows = json!([{"type": 1, "components": [button("open")]},
                          {"type": 1, "components": [select()]}]);
        let data = use_component(&rows, "open", None).unwrap();
        assert_eq!(data["component_type"], 2);
        assert!(use_component(&rows, "nope", None).is_err());
        assert!(use_component(&rows, "open", Some(&["x".into()])).is_err());
        let chose = use_component(&rows, "topic", Some(&["billing".into()])).unwrap();
        assert_eq!(chose["values"], json!(["billing"]));
        assert!(use_component(&rows, "topic", Some(&["gold".into()])).is_err());
        assert!(use_component(&rows, "topic", Some(&[])).is_err(), "min 1");
    }

    #[test]
    fn modals_are_validated_and_submitted_with_their_rules() {
        let modal = json!({"custom_id": "ticket", "title": "Open a ticket", "components": [
            {"type": 1, "components": [{"type": 4, "custom_id": "topic", "label": "Topic",
                                        "style": 1, "min_length": 3, "max_length": 100}]},
            {"type": 1, "components": [{"type": 4, "custom_id": "more", "label": "More",
                                        "style": 2, "required": false}]},
        ]});
        assert!(check_modal(&modal).is_ok());
        let mut untitled = modal.clone();
        untitled["title"] = json!("");
        assert!(check_modal(&untitled).is_err());
        let data = submit_modal(&modal, &[("topic".into(), "Refund".into())]).unwrap();
        assert_eq!(data["components"][0]["components"][0]["value"], "Refund");
        assert_eq!(data["components"][1]["components"][0]["value"], "");
        assert!(submit_modal(&modal, &[]).is_err(), "topic is required");
        assert!(submit_modal(&modal, &[("topic".into(), "ab".into())]).is_err());
        assert!(submit_modal(&modal, &[("x".into(), "abc".into())]).is_err());
    }
}
