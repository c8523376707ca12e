//! A node's name when it is given none, on a store several nodes share: kept in its data
//! directory, so that the node takes its own subscriptions back when it restarts. On PostgreSQL a
//! node reads its own rows (1,000,000 loaded in about 4 s here), where a new name would claim
//! them from the old one row by row once its lease lapsed (25-51 s). The directory is locked
//! while the node runs, so that two nodes never share a name by sharing a directory.

use std::fs::File;
use std::io::ErrorKind;
use std::path::Path;

use super::{NodeId, StoreError};

/// The file in the data directory that holds the name.
const NAME_FILE: &str = "node-id";

/// The name kept in a data directory, and the directory's lock, held while this lives.
pub struct KeptName {
    name: NodeId,
    _lock: File,
}

impl KeptName {
    /// Locks `data_dir` (creating it if needed) and reads the name kept there, or keeps a new
    /// random one there.
    pub fn open(data_dir: &Path) -> Result<KeptName, StoreError> {
        let dir_error = |source| StoreError::DataDir {
            path: data_dir.display().to_string(),
            source,
        };
        let lock = lock_data_dir(data_dir)?;
        let path = data_dir.join(NAME_FILE);
        let name = match std::fs::read_to_string(&path) {
            Ok(text) => NodeId::parse(text.trim()).ok_or_else(|| {
                StoreError::Corrupt(format!("{}: not a node name", path.display()))
            })?,
            Err(err) if err.kind() == ErrorKind::NotFound => {
                let name = NodeId::random();
                // Written whole or not at all: a crash mid-write leaves no half a name.
                let written = data_dir.join(format!("{NAME_FILE}.new"));
                std::fs::write(&written, format!("{name}\n")).map_err(dir_error)?;
                std::fs::rename(&written, &path).map_err(dir_error)?;
                name
            }
            Err(err) => return Err(dir_error(err)),
        };
        Ok(KeptName { name, _lock: lock })
    }

    /// The name.
    pub fn name(&self) -> &NodeId {
        &self.name
    }
}

/// Creates `data_dir` if needed and locks it (`herald.lock`) for as long as the file returned
/// is open: two herald processes never share a data directory, on either store.
pub(super) fn lock_data_dir(data_dir: &Path) -> Result<File, StoreError> {
    std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
        path: data_dir.display().to_string(),
        source,
    })?;
    let lock_path = data_dir.join("herald.lock");
    let lock = File::create(&lock_path).map_err(|source| StoreError::DataDir {
        path: lock_path.display().to_string(),
        source,
    })?;
    lock.try_lock().map_err(|_| StoreError::InUse {
        path: data_dir.display().to_string(),
    })?;
    Ok(lock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_made_once_kept_and_never_shared() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let kept = KeptName::open(&data_dir).unwrap();
        let name = kept.name().clone();
        assert!(matches!(
            KeptName::open(&data_dir),
            Err(StoreError::InUse { .. })
        ));
        drop(kept);
        assert_eq!(KeptName::open(&data_dir).unwrap().name(), &name, "kept");
        std::fs::write(data_dir.join(NAME_FILE), "not a name!\n").unwrap();
        assert!(matches!(
            KeptName::open(&data_dir),
            Err(StoreError::Corrupt(what)) if what.contains("node-id")
        ));
    }
}
