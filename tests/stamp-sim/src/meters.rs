//! The published meter table (the product's own copy, `shared/app/data/meters.csv`, so that the
//! simulator reports exactly the meters the exports know) and what the
//! simulator derives from each meter: the resource type whose URI it reports.

/// One row of the meter table.
#[derive(Clone, Debug)]
pub(crate) struct Meter {
    /// `resource_provider` column, e.g. `Compute`, `Network`, `Managed Disks`.
    pub provider: String,
    /// The meter id exactly as the table publishes it (network ids have no hyphens).
    pub id: String,
}

impl Meter {
    /// ARM resource type and name prefix used for resources billed on this meter.
    pub fn resource_type(&self) -> (&'static str, &'static str) {
        match self.provider.as_str() {
            "Compute" => ("Microsoft.Compute/virtualMachines", "vm"),
            "Network" => ("Microsoft.Network/publicIPAddresses", "pip"),
            "Storage" => ("Microsoft.Storage/storageAccounts", "sa"),
            "Managed Disks" => ("Microsoft.Compute/disks", "disk"),
            "SQL RP" => ("Microsoft.SQLAdapter/databases", "sqldb"),
            "MySQL RP" => ("Microsoft.MySQLAdapter/databases", "mysqldb"),
            "Key Vault" => ("Microsoft.KeyVault/vaults", "kv"),
            "App Service" => ("Microsoft.Web/sites", "app"),
            _ => ("Microsoft.Resources/resources", "res"),
        }
    }

    /// Whether the table publishes quantities of this meter as whole counts (IP addresses).
    pub fn counts_whole_units(&self) -> bool {
        self.provider == "Network"
    }
}

const METERS_CSV: &str = include_str!("../../../shared/app/data/meters.csv");

/// Parses the embedded meter table. Only the first three columns matter; `notes` may contain
/// quoted commas, which a minimal quote-aware split handles.
pub(crate) fn meter_table() -> Vec<Meter> {
    METERS_CSV
        .lines()
        .skip(1)
        .filter(|line| !line.trim().is_empty())
        .filter_map(|line| {
            let fields = split_csv_line(line);
            match fields.as_slice() {
                [provider, id, ..] => Some(Meter { provider: provider.clone(), id: id.clone() }),
                _ => None,
            }
        })
        .collect()
}

fn split_csv_line(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                current.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    fields.push(current);
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_parses_every_meter() {
        let meters = meter_table();
        assert_eq!(meters.len(), 83);
        assert!(meters.iter().all(|m| m.id.len() == 32 || m.id.len() == 36));
        assert_eq!(meters[0].id, "F271A8A388C44D93956A063E1D2FA80B");
        assert_eq!(meters[6].id, "B9FF3CD0-28AA-4762-84BB-FF8FBAEA6A90");
        assert_eq!(meters.last().map(|m| m.provider.as_str()), Some("Managed Disks"));
    }
}
