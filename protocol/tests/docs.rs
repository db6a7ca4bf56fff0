//! PROTOCOL.md stays in step with the code: every error code and api key is documented with
//! its number.

use floe_protocol::ErrorCode;
use floe_protocol::client::ApiKey;
use floe_protocol::peer::PeerApiKey;

fn doc() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/PROTOCOL.md")).unwrap()
}

#[test]
fn every_error_code_is_documented() {
    let doc = doc();
    for &code in ErrorCode::ALL {
        let row = format!("| {} | `{}` |", code as u16, code.name());
        assert!(doc.contains(&row), "PROTOCOL.md lacks the row {row}");
    }
}

#[test]
fn every_api_key_is_documented() {
    let doc = doc();
    for &key in ApiKey::ALL {
        let row = format!("| {} | {:?} |", key as u16, key);
        assert!(doc.contains(&row), "PROTOCOL.md lacks client api {row}");
    }
    for &key in PeerApiKey::ALL {
        let row = format!("| {} | {:?} |", key as u16, key);
        assert!(doc.contains(&row), "PROTOCOL.md lacks peer api {row}");
    }
}
