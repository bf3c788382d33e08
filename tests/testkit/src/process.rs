//! Starting the workspace's executables from tests as an operator or a platform starts them: with none
//! of our variables inherited from the developer's shell, and, when the process needs one, a file
//! secret store readable only by its owner.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// Prefixes of the variables a test's process never inherits: ours, and the platforms' own (a shell
/// with AWS credentials or a Functions host setting would otherwise change what the process does).
pub const SCRUBBED_PREFIXES: [&str; 4] = ["AZS_USAGE_", "AWS_", "FUNCTIONS_", "WEBSITE_"];

/// `program` without any inherited variable that starts with one of [`SCRUBBED_PREFIXES`]; the test
/// sets what the process is to see.
pub fn scrubbed(program: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new(program);
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(|n| SCRUBBED_PREFIXES.iter().any(|p| n.starts_with(p))) {
            command.env_remove(name);
        }
    }
    command
}

/// Writes a file secret store holding `secrets` (name, value) at `path`, mode 0600: the file store
/// refuses a file others may read.
pub fn secrets_file(path: &Path, secrets: &[(&str, &str)]) {
    let entries: serde_json::Map<String, serde_json::Value> =
        secrets.iter().map(|(name, value)| (name.to_string(), serde_json::json!(value))).collect();
    std::fs::write(path, serde_json::Value::Object(entries).to_string())
        .expect("the secrets file is written");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("mode 0600 is set");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scrubbed_process_sees_none_of_our_variables_but_what_the_test_sets() {
        let mut command = scrubbed("env");
        let names: Vec<String> = command
            .get_envs()
            .filter(|(_, v)| v.is_none())
            .map(|(n, _)| n.to_string_lossy().into())
            .collect();
        let inherited: Vec<String> = std::env::vars()
            .map(|(n, _)| n)
            .filter(|n| SCRUBBED_PREFIXES.iter().any(|p| n.starts_with(p)))
            .collect();
        assert_eq!(names.len(), inherited.len(), "{names:?} vs {inherited:?}");
        let output = command.env("AZS_USAGE_DATABASE", "sqlite:x.db").output().unwrap();
        let seen = String::from_utf8_lossy(&output.stdout);
        let ours: Vec<&str> =
            seen.lines().filter(|l| SCRUBBED_PREFIXES.iter().any(|p| l.starts_with(p))).collect();
        assert_eq!(ours, ["AZS_USAGE_DATABASE=sqlite:x.db"]);
    }

    #[test]
    fn the_secrets_file_holds_each_secret_and_only_its_owner_may_read_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.json");
        secrets_file(&path, &[("azs-usage/api-token", "token-1")]);
        let text: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(text, serde_json::json!({ "azs-usage/api-token": "token-1" }));
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
