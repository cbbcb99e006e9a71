//! Enrichment, routes and the enriched Avro output, against the real broker and registry.

use std::time::Duration;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value as Avro;
use apache_avro::Schema;
use auditflow::config::RegistryConfig;
use auditflow::kafka::registry::Registry;
use rdkafka::message::{Headers, Message};

use crate::util::*;

fn event(action: &str, result: &str, trace: &str) -> Input {
    let text = format!(
        r#"{{"ts":"2026-04-18T14:22:07.441Z","actor":"user:j.patel@acme.com","action":"{action}","artifact":"billing-service@v4.2.1","policy":"prod-billing-deploy-v3","target":"aws:us-east-1:cluster-prod-02","mode":"fixed","trace":"{trace}","result":"{result}"}}"#
    );
    Input { partition: 0, key: Some(trace.as_bytes().to_vec()), value: Some(text.into_bytes()), headers: vec![] }
}

/// The policy catalog feeds alerts and is reloaded when its file changes; a route takes the
/// events its predicate selects; the enriched topic holds registered Avro a schema-aware reader
/// decodes with nothing but the registry.
#[tokio::test(flavor = "multi_thread")]
async fn catalog_routes_and_enriched_avro_work_end_to_end() {
    let _guard = REGISTRY_LOCK.read().await;
    let raw = unique("enrich");
    let (alerts, dlq, prefix) = (format!("{raw}.alerts"), format!("{raw}.dlq"), format!("{raw}.siem."));
    let (enriched, routed) = (format!("{raw}.enriched"), format!("{raw}.prod-deploys"));
    create_topics(&[&raw, &alerts, &dlq, &format!("{prefix}ecs"), &enriched, &routed], 1).await;

    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("policies.toml");
    let write_catalog = |owner: &str| {
        std::fs::write(
            &catalog,
            format!("[policies.\"prod-billing-deploy-v3\"]\nowner = \"{owner}\"\nseverity = 9\ncompliance = [\"PCI-DSS:6.5.1\"]\n"),
        )
        .unwrap();
    };
    write_catalog("payments-platform");
    let more = format!(
        "[registry]\nurl = \"{}\"\n[enrich]\npolicy_catalog = \"{}\"\ncatalog_check_interval_ms = 100\n[enriched]\nenabled = true\ntopic = \"{enriched}\"\n[[routes]]\nname = \"prod-deploys\"\ntopic = \"{routed}\"\nwhen = \"action = deploy and target matches prod\"\n",
        registry_url(),
        catalog.display()
    );
    let group = unique("group");
    let config = write_config_with(dir.path(), &group, &raw, &alerts, &dlq, &prefix, &more);
    let app = Auditflow::start(&config);
    produce(&raw, &[event("deploy", "allowed", "tr-a"), event("execute", "denied", "tr-b")]).await;
    await_committed_to_end(&group, &raw, Duration::from_secs(60));

    let first = read_all(&alerts);
    assert_eq!(first.len(), 1);
    let alert: serde_json::Value = serde_json::from_slice(first[0].payload().unwrap()).unwrap();
    assert_eq!(alert["severity"], 9, "the catalog's severity replaces the ladder's");
    assert_eq!(alert["policy"]["owner"], "payments-platform");
    assert_eq!(alert["policy"]["compliance"][0], "PCI-DSS:6.5.1");

    let routed_records = read_all(&routed);
    assert_eq!(routed_records.len(), 1, "only the prod deploy matches");
    let doc: serde_json::Value = serde_json::from_slice(routed_records[0].payload().unwrap()).unwrap();
    assert_eq!((doc["trace"].as_str(), doc["cluster"].as_str()), (Some("tr-a"), Some("cluster-prod-02")));
    let route_header = routed_records[0].headers().unwrap().iter().find(|h| h.key == "auditflow.route").unwrap();
    assert_eq!(route_header.value, Some(&b"prod-deploys"[..]));

    // A reader with only the registry: read the id from the header, fetch, decode.
    let registry = Registry::from_config(&RegistryConfig { url: Some(registry_url()), ..Default::default() }).unwrap().unwrap();
    let enriched_records = read_all(&enriched);
    assert_eq!(enriched_records.len(), 2);
    for record in &enriched_records {
        let bytes = record.payload().unwrap();
        assert_eq!(bytes[0], 0, "confluent magic byte");
        let id = u32::from_be_bytes(bytes[1..5].try_into().unwrap());
        let schema = Schema::parse_str(&registry.fetch(id).await.unwrap()).unwrap();
        let Avro::Record(fields) = GenericDatumReader::builder(&schema).build().unwrap().read_value(&mut &bytes[5..]).unwrap() else {
            panic!("not a record")
        };
        let trace = fields.iter().find(|(n, _)| n == "trace").unwrap();
        assert_eq!(
            record.key().unwrap(),
            match &trace.1 {
                Avro::String(s) => s.as_bytes(),
                _ => panic!(),
            }
        );
        let owner = fields.iter().find(|(n, _)| n == "policy_owner").unwrap();
        assert_eq!(owner.1, Avro::Union(1, Box::new(Avro::String("payments-platform".into()))));
    }

    // Change the catalog: the next alert carries the new owner, without a restart.
    write_catalog("risk-office");
    await_log(&app.log, "Policy catalog reloaded.", Duration::from_secs(30));
    produce(&raw, &[event("execute", "denied", "tr-c")]).await;
    await_committed_to_end(&group, &raw, Duration::from_secs(60));
    let (status, log) = app.stop();
    assert!(status.success(), "{log}");
    let alerts_now = read_all(&alerts);
    let last: serde_json::Value = serde_json::from_slice(alerts_now.last().unwrap().payload().unwrap()).unwrap();
    assert_eq!(last["policy"]["owner"], "risk-office");
}
