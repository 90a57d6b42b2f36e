//! Building the message components and modals features send (tickets' panel, workflows'
//! buttons): action rows, buttons, text inputs, a modal response.

use twilight_model::channel::message::component::{
    ActionRow, Button, ButtonStyle, Component, TextInput,
};
use twilight_model::http::interaction::{
    InteractionResponse, InteractionResponseData, InteractionResponseType,
};

/// An action row of `components`.
pub(crate) fn row(components: Vec<Component>) -> Component {
    Component::ActionRow(ActionRow {
        components,
        id: None,
    })
}

pub(crate) fn button(custom_id: &str, label: &str, style: ButtonStyle) -> Component {
    Component::Button(Button {
        custom_id: Some(custom_id.to_owned()),
        disabled: false,
        emoji: None,
        id: None,
        label: Some(label.to_owned()),
        sku_id: None,
        style,
        url: None,
    })
}

/// A modal of text inputs, one per row (Discord's layout for modals).
pub(crate) fn modal(
    custom_id: String,
    title: String,
    inputs: Vec<TextInput>,
) -> InteractionResponse {
    let rows = inputs
        .into_iter()
        .map(|input| row(vec![Component::TextInput(input)]))
        .collect();
    InteractionResponse {
        kind: InteractionResponseType::Modal,
        data: Some(InteractionResponseData {
            custom_id: Some(custom_id),
            title: Some(title),
            components: Some(rows),
            ..InteractionResponseData::default()
        }),
    }
}
