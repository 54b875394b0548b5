"""Rules and automations: customer events, rule evaluation, actions, webhooks."""
