"""The wire to the Kryten bridge: subjects, envelope parsing (checked once), the paced sender,
lifecycle announcements and the NATS connection."""
