#![no_main]
//! Fuzz target: any JSON a user could apply as a ReplicationSource or ReplicationDestination
//! (the API server only checks the schema) deserializes or is rejected without a panic, and the
//! reconcile decisions on whatever deserializes never panic and never make two Jobs.
use std::collections::BTreeSet;

use arca_kube::api::{ReplicationDestination, ReplicationSource};
use arca_kube::reconcile::{
    Action, DestinationObserved, Object, OwnedObserved, SecretObserved, SourceObserved,
};
use arca_kube::{ControllerConfig, reconcile_destination, reconcile_source};
use libfuzzer_sys::fuzz_target;

fn secret(name: &str) -> Option<SecretObserved> {
    Some(SecretObserved {
        name: name.to_owned(),
        keys: BTreeSet::from(["RESTIC_REPOSITORY".to_owned(), "RESTIC_PASSWORD".to_owned()]),
    })
}

fn jobs(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, Action::Apply(Object::Job(_))))
        .count()
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
    let config = ControllerConfig::default();
    if let Ok(source) = serde_json::from_value::<ReplicationSource>(value.clone()) {
        let repository = source
            .spec
            .restic
            .as_ref()
            .map(|r| r.repository.clone())
            .unwrap_or_default();
        let observed = SourceObserved {
            source,
            source_pvc: None,
            repository_secret: secret(&repository),
            replica_secrets: Vec::new(),
            custom_ca_found: true,
            owned: OwnedObserved::default(),
        };
        let decision = reconcile_source(&observed, now, &config);
        assert!(jobs(&decision.actions) <= 1);
    }
    if let Ok(destination) = serde_json::from_value::<ReplicationDestination>(value) {
        let repository = destination
            .spec
            .restic
            .as_ref()
            .map(|r| r.repository.clone())
            .unwrap_or_default();
        let observed = DestinationObserved {
            destination,
            destination_pvc: None,
            repository_secret: secret(&repository),
            custom_ca_found: true,
            owned: OwnedObserved::default(),
        };
        let decision = reconcile_destination(&observed, now, &config);
        assert!(jobs(&decision.actions) <= 1);
    }
});
