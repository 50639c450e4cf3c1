"""Scheduled, encrypted, verified backups, and passphrase-encrypted exports.

The hourly schedule and the Dagster job (`defs`, the area's only Dagster module) and
`goalport backup ...` all call the Dagster-free modules below, so a backup takes one path
whoever asks for it. In dependency order (each imports only modules above it):

- `config`: a user's `BackupConfig` and `Retention`, their checks, load/save/delete, and
  when the next backup is (`next_backup_after`);
- `due`: who is due, queueing their backups in batches, failing runs that were lost;
- `archive`: the backup file: its name, manifest, building, decrypting and opening it;
- `retention`: listing a user's backups, which to keep, deleting the rest, erasing all;
- `runner`: a batch run: render, encrypt, write, the restore drill, record;
- `passphrase_export`: on-demand copies encrypted with the user's passphrase.
"""
