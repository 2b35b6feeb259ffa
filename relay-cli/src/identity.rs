//! Loading or creating the node's key.

use std::io::Write;
use std::path::Path;

use relay_proto::identity::{Keypair, keypair_from_secret, keypair_from_seed};

use crate::IdentityArgs;

/// The key the arguments name: a seed, a key file, or a fresh random key.
pub(crate) fn load(args: &IdentityArgs) -> Result<Keypair, String> {
    match (&args.seed, &args.key) {
        (Some(seed), _) => Ok(keypair_from_seed(*seed)),
        (None, Some(path)) => load_or_create(path),
        (None, None) => Ok(random()?),
    }
}

fn random() -> Result<Keypair, String> {
    let mut secret = [0u8; 32];
    getrandom(&mut secret)?;
    Ok(keypair_from_secret(secret))
}

fn getrandom(buf: &mut [u8]) -> Result<(), String> {
    getrandom::fill(buf).map_err(|e| format!("cannot read OS randomness: {e}"))
}

fn load_or_create(path: &Path) -> Result<Keypair, String> {
    match std::fs::read(path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes)
            .map_err(|e| format!("{}: not a libp2p protobuf key: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = random()?;
            let encoded = key.to_protobuf_encoding().map_err(|e| e.to_string())?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options
                .open(path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            file.write_all(&encoded)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(key)
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}
