"""Zoho CRM (REST v2) connector: native tags on Accounts and Contacts."""
