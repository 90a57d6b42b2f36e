//! The registry of the guild actor's features: a new feature is a folder under `src/` and
//! one line here. The order is the order each event is handed to them.

use protonn_shard::EventTypeFlags;
use twilight_model::gateway::event::Event;

use crate::feature::Feature;

static FEATURES: &[&dyn Feature] = &[
    &crate::moderation::Moderation,
    &crate::workflows::Workflows,
    &crate::tickets::Tickets,
    &crate::automod::Automod,
    &crate::privacy::Privacy,
    &crate::announcements::Schedules,
];

pub(crate) fn all() -> &'static [&'static dyn Feature] {
    FEATURES
}

/// The feature answering command `name` (lowercase), and its index in [`all`].
pub(crate) fn by_command(name: &str) -> Option<(usize, &'static dyn Feature)> {
    FEATURES
        .iter()
        .enumerate()
        .find(|(_, feature)| feature.commands().contains(&name))
        .map(|(index, feature)| (index, *feature))
}

/// The feature whose component or modal has `custom_id`, and its index in [`all`].
pub(crate) fn by_component(custom_id: &str) -> Option<(usize, &'static dyn Feature)> {
    FEATURES
        .iter()
        .enumerate()
        .find(|(_, feature)| {
            feature
                .component_prefix()
                .is_some_and(|prefix| custom_id.starts_with(prefix))
        })
        .map(|(index, feature)| (index, *feature))
}

/// The feature called `name` (a timer's `feature`), and its index in [`all`].
pub(crate) fn by_name(name: &str) -> Option<(usize, &'static dyn Feature)> {
    FEATURES
        .iter()
        .enumerate()
        .find(|(_, feature)| feature.name() == name)
        .map(|(index, feature)| (index, *feature))
}

/// Whether `feature` is handed `event` by its guild's running actor: of one of its types
/// (resident-only ones included), and wanted.
pub(crate) fn handles(feature: &dyn Feature, event: &Event) -> bool {
    (feature.event_types() | feature.resident_event_types())
        .contains(EventTypeFlags::from(event.kind()))
        && feature.wants(event)
}

/// Whether `feature` wants `event` enough to start its guild's actor for it.
pub(crate) fn activates(feature: &dyn Feature, event: &Event) -> bool {
    feature
        .event_types()
        .contains(EventTypeFlags::from(event.kind()))
        && feature.wants(event)
}

/// Whether some feature is handed `event` by a running actor.
pub(crate) fn any_handles(event: &Event) -> bool {
    FEATURES.iter().any(|feature| handles(*feature, event))
}

/// Whether some feature starts its guild's actor for `event`.
pub(crate) fn any_activates(event: &Event) -> bool {
    FEATURES.iter().any(|feature| activates(*feature, event))
}

/// Every feature command's name: `command` label values of the command metrics.
pub(crate) fn command_labels() -> impl Iterator<Item = &'static str> {
    FEATURES
        .iter()
        .flat_map(|feature| feature.commands().iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shards_deserialise_every_event_type_a_feature_handles() {
        for feature in all() {
            let types = feature.event_types() | feature.resident_event_types();
            let missing = types.difference(crate::event_types());
            assert!(missing.is_empty(), "{}: {missing:?}", feature.name());
        }
    }

    #[test]
    fn no_two_features_claim_a_name_or_a_command_and_none_shadows_a_built_in() {
        let mut names: Vec<&str> = all().iter().map(|f| f.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all().len());
        let mut commands: Vec<&str> = command_labels().collect();
        let count = commands.len();
        commands.sort_unstable();
        commands.dedup();
        assert_eq!(commands.len(), count, "a command answered by two features");
        for built_in in crate::commands::BUILT_IN {
            assert!(
                !commands.contains(&built_in),
                "{built_in} is the actor's own"
            );
        }
    }
}
