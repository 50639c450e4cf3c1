"""Where users keep their backups and exports: destination URLs, their filesystems, credentials."""
