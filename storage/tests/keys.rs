//! Gateway key file handling.

use std::os::unix::fs::PermissionsExt;

use psmgate_storage::keys::{GatewayKey, KeyError};

#[test]
fn key_is_generated_private_and_reloaded() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("keys/gateway.key");
    let key = GatewayKey::load_or_generate(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let pem = std::fs::read_to_string(&path).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));

    let again = GatewayKey::load_or_generate(&path).unwrap();
    assert_eq!(again.key_id(), key.key_id());
    assert_eq!(again.public_key_base64(), key.public_key_base64());
    assert!(!format!("{key:?}").contains("BEGIN"));
}

#[test]
fn key_readable_by_others_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("gateway.key");
    GatewayKey::load_or_generate(&path).unwrap();
    for mode in [0o644, 0o640, 0o604, 0o660] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let err = GatewayKey::load_or_generate(&path).unwrap_err();
        assert!(
            matches!(err, KeyError::InsecurePermissions { mode: m, .. } if m == mode),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
    GatewayKey::load(&path).unwrap();
}

#[test]
fn garbage_key_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("gateway.key");
    std::fs::write(&path, "not a key").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = GatewayKey::load_or_generate(&path).unwrap_err();
    assert!(matches!(err, KeyError::Invalid { .. }), "{err}");
    // The bad file is not replaced.
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a key");
}
