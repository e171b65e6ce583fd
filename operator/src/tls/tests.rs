use std::collections::BTreeSet;
use std::time::Duration;

use super::renewal::verdict;
use super::*;

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn renewal_verdict_table() {
    let wanted = names(&["a.lab.pgreplica", "127.0.0.1"]);
    let good = CertFacts {
        not_before: 1_000,
        not_after: 4_000,
        names: wanted.iter().cloned().collect(),
        from_ca: true,
    };
    let with = |edit: &dyn Fn(&mut CertFacts)| {
        let mut f = good.clone();
        edit(&mut f);
        f
    };
    let table: [(&str, Option<CertFacts>, i64, bool); 7] = [
        ("fresh", Some(good.clone()), 1_500, false),
        ("just before two thirds", Some(good.clone()), 2_999, false),
        ("a third left", Some(good.clone()), 3_000, true),
        ("expired", Some(good.clone()), 5_000, true),
        ("missing", None, 1_500, true),
        (
            "another CA",
            Some(with(&|f| f.from_ca = false)),
            1_500,
            true,
        ),
        (
            "other names",
            Some(with(&|f| {
                f.names = BTreeSet::from(["b.lab.pgreplica".to_string()])
            })),
            1_500,
            true,
        ),
    ];
    for (what, facts, now, renew) in table {
        let got = verdict(facts.as_ref(), &wanted, now);
        assert_eq!(matches!(got, Verdict::Renew(_)), renew, "{what}: {got:?}");
    }
}

#[test]
fn issued_certificates_read_back_and_name_their_issuer() {
    let ca = Authority::generate("lab", CA_VALIDITY).expect("CA");
    let other = Authority::generate("lab", CA_VALIDITY).expect("other CA");
    let wanted = names(&["a.lab.pgreplica", "lab-rw.db.svc", "127.0.0.1"]);
    let issued = ca
        .issue(&wanted, Usage::Server, LEAF_VALIDITY)
        .expect("issue");
    let facts = CertFacts::read(&issued.cert_pem, &ca).expect("read");
    assert!(facts.from_ca);
    assert_eq!(facts.names, wanted.iter().cloned().collect());
    let life = facts.not_after - facts.not_before;
    assert!(
        (LEAF_VALIDITY.as_secs() as i64..LEAF_VALIDITY.as_secs() as i64 + 400).contains(&life),
        "{life}"
    );
    assert!(
        !CertFacts::read(&issued.cert_pem, &other)
            .expect("read")
            .from_ca
    );
    assert_eq!(
        verdict(Some(&facts), &wanted, jiff::Timestamp::now().as_second()),
        Verdict::Keep
    );
}

#[test]
fn a_ca_is_read_back_only_with_its_own_key() {
    let ca = Authority::generate("lab", CA_VALIDITY).expect("CA");
    let other = Authority::generate("lab", CA_VALIDITY).expect("other CA");
    assert!(Authority::from_pem(ca.cert_pem(), ca.key_pem()).is_ok());
    let mixed = Authority::from_pem(ca.cert_pem(), other.key_pem()).expect_err("mismatch");
    assert!(mixed.to_string().contains("not the CA key"), "{mixed}");
    assert!(Authority::from_pem("garbage", ca.key_pem()).is_err());
}

#[test]
fn peer_names_are_matched_exactly() {
    let ca = Authority::generate("lab", CA_VALIDITY).expect("CA");
    let brain = ca
        .issue(&[brain_name("lab")], Usage::Client, LEAF_VALIDITY)
        .expect("issue");
    let der = super::renewal::first_der(&brain.cert_pem, "brain").expect("der");
    assert!(peer_is(&der, "brain.lab.pgreplica"));
    assert!(!peer_is(&der, &brain_name("shop")));
    assert!(!peer_is(&der, &agent_name("lab", "a")));
    assert!(!peer_is(&der, "not a name"));
}

#[test]
fn the_local_store_keeps_its_ca_and_renews_member_certificates_when_due() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = LocalTls::open(&dir.path().join("tls"), "lab").expect("open");
    let again = LocalTls::open(&dir.path().join("tls"), "lab").expect("open again");
    assert_eq!(tls.authority().cert_pem(), again.authority().cert_pem());
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&dir.path().join("tls/ca.key")), 0o600);

    let member_dir = dir.path().join("a");
    let (files, written) = tls.ensure_member(&member_dir, "a", None).expect("issue");
    assert!(written);
    assert_eq!(mode(&files.key), 0o600);
    let (_, written) = tls.ensure_member(&member_dir, "a", None).expect("keep");
    assert!(!written, "a current certificate is kept");

    // A certificate a third from its end is issued again (30 s of validity: due at once).
    let short = tls.clone().with_validity(Duration::from_secs(30));
    std::fs::remove_file(&files.cert).expect("rm");
    let (_, written) = short
        .ensure_member(&member_dir, "a", None)
        .expect("issue short");
    assert!(written);
    let before = std::fs::read_to_string(&files.cert).expect("read");
    let (_, written) = short.ensure_member(&member_dir, "a", None).expect("renew");
    assert!(written, "due for renewal");
    assert_ne!(std::fs::read_to_string(&files.cert).expect("read"), before);

    // A renewal cut short (a new key next to the old certificate) is issued again.
    let other = tls
        .authority()
        .issue(&tls.member_names("a"), Usage::Server, LEAF_VALIDITY)
        .expect("issue");
    std::fs::write(&files.key, &other.key_pem).expect("write");
    let (_, written) = tls.ensure_member(&member_dir, "a", None).expect("repair");
    assert!(
        written,
        "a key that does not fit the certificate is replaced"
    );
    let (cert, key) = (
        std::fs::read_to_string(&files.cert).expect("cert"),
        std::fs::read_to_string(&files.key).expect("key"),
    );
    assert!(pair_usable(tls.authority().cert_pem(), &cert, &key));

    // A damaged CA is an error that names the file, never silently replaced.
    std::fs::write(dir.path().join("tls/ca.key"), "damaged").expect("write");
    let error = LocalTls::open(&dir.path().join("tls"), "lab").expect_err("damaged");
    assert!(error.to_string().contains("CA key"), "{error}");
}
