"""The WhatsApp providers: one port, the Cloud API and Evolution API adapters, their webhook
checks and a sandbox that speaks both (local stack and tests only)."""
