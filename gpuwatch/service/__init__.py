"""Running as a system service: sd_notify, structured logs, the watchdog and layered settings."""
